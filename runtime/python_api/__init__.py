"""The Python API behind ``import dslrun``: ``check``, ``compile``, ``run``.

The same engine as the command line: a spec compiles with the same passes
(``dsl/compile.py``) and runs through the same ``runtime/run.py: execute_run``; only
the front door differs (Python values instead of ``--set`` text, an in-memory pool
instead of a file, Arrow tables back instead of files to read).
"""

from dslrun.runtime.python_api.result import Result
from dslrun.runtime.python_api.specs import CompiledPlan, check, compile, run

__all__ = ["CompiledPlan", "Result", "check", "compile", "run"]
