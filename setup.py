"""Map the repository's top-level folders onto one import namespace, ``dslrun``.

``core/`` -> ``dslrun.core``, ``dsl/`` -> ``dslrun.dsl``, ``operators/`` ->
``dslrun.operators``, ``runtime/`` -> ``dslrun.runtime``. Nested packages (any folder
below them with an ``__init__.py``) are discovered here, so a new subpackage never has
to be listed by hand. ``dslrun/`` holds only ``dslrun/__init__.py``, the Python API's
front door (``import dslrun; dslrun.run(...)``), which loads its names lazily from
``dslrun.runtime.python_api``.
"""

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
ROOTS = {"dslrun": "dslrun", "core": "dslrun.core", "dsl": "dslrun.dsl", "operators": "dslrun.operators", "runtime": "dslrun.runtime"}
# Non-Python files that must travel in the wheel (checked by tests/test_packaging.py).
DATA_PATTERNS = ["*.lark", "*.txt", "*.json", "*.jinja", "*.md"]


def discover() -> tuple[list[str], dict[str, str]]:
    packages: list[str] = []
    package_dir: dict[str, str] = {}
    for folder, prefix in ROOTS.items():
        for init in sorted((HERE / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(HERE)
            if any(part.startswith(".") for part in rel.parts):
                continue
            name = ".".join([prefix, *rel.parts[1:]])
            packages.append(name)
            package_dir[name] = rel.as_posix()
    return packages, package_dir


packages, package_dir = discover()
setup(
    packages=packages,
    package_dir=package_dir,
    package_data={name: DATA_PATTERNS for name in packages},
    include_package_data=False,
)
