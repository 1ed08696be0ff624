"""Symlinks inside ``--out`` never let a write land outside it (runtime/data/out_paths.py).

A file that is a link is replaced by the new file (its target untouched); a folder that is a link
leading outside ``--out`` is refused with a message naming it, exit 1.
Before: ``out/quarantine -> /elsewhere`` or ``save(path: "sub/x.json")`` with ``out/sub -> /``
wrote through the link, outside ``--out`` (rc 0).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dslrun.runtime.cache.unsaved import SideFile
from dslrun.runtime.data.out_paths import UnsafeOutput, guard, make_dirs
from dslrun.runtime.data.pool_files import atomic_write
from testkit.cli import dslrun, write_pool

# Every file a plain run writes below --out (the pool has one bad record: a quarantine file too).
FILES = ["selected.json", "selected.scores.parquet", "pool.scores.parquet", "report.html", "report.json",
         "dslrun.lock.json", "run.json", "profile.json", "quarantine/pool.jsonl"]


def project(tmp_path: Path, save_path: str | None = None) -> tuple[Path, Path]:
    """A spec, a pool with one record to quarantine, an empty --out and a folder outside it."""
    records = [{"instruction": f"Task {i}", "input": "", "output": f"answer {i}"} for i in range(4)]
    write_pool(tmp_path / "pool.json", [*records, {"instruction": "no output"}])
    save = f'save(pool, path: "{save_path}")' if save_path else "save(pool)"
    (tmp_path / "spec.sel").write_text(f'pool = load(path: "pool.json")\n{save}\n')
    out, outside = tmp_path / "o", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    return out, outside


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_link_at_any_output_file_is_replaced_and_its_target_untouched(tmp_path):
    out, outside = project(tmp_path)
    (out / "quarantine").mkdir()
    for name in FILES:
        target = outside / name.replace("/", "_")
        target.write_text("not yours to overwrite")
        (out / name).symlink_to(target)
    before = snapshot(outside)
    proc = dslrun("run", "spec.sel", "-q", "--out", "o", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert snapshot(outside) == before
    for name in FILES:
        assert not (out / name).is_symlink() and (out / name).is_file(), name
    assert len(json.loads((out / "selected.json").read_text())) == 4


@pytest.mark.parametrize("link,save_path", [("quarantine", None), ("sub", "sub/picked.json")])
def test_a_folder_link_leading_outside_is_refused_with_its_name(tmp_path, link, save_path):
    out, outside = project(tmp_path, save_path)
    (out / link).symlink_to(outside, target_is_directory=True)
    proc = dslrun("run", "spec.sel", "-q", "--out", "o", cwd=tmp_path)
    assert proc.returncode == 1
    assert list(outside.iterdir()) == []  # nothing written outside
    assert "Traceback" not in proc.stderr
    assert (f"refused to write {out / link}: a symbolic link to {outside}, outside the output folder {out}; "
            "remove the link or choose another --out") in proc.stderr


def test_a_folder_link_that_stays_inside_is_followed(tmp_path):
    out, _ = project(tmp_path, "sub/picked.json")
    (out / "real").mkdir()
    (out / "sub").symlink_to(out / "real", target_is_directory=True)
    dslrun("run", "spec.sel", "-q", "--out", "o", cwd=tmp_path, check=True)
    assert len(json.loads((out / "real" / "picked.json").read_text())) == 4


def test_evaluate_refuses_its_folder_before_judging(tmp_path):
    from testkit.openai_server import OpenAITestServer

    out, outside = project(tmp_path)
    (tmp_path / "a.jsonl").write_text(json.dumps({"instruction": "q", "answer": "a"}) + "\n")
    (tmp_path / "spec.sel").write_text(
        'param url = "http://x"\npool = load(path: "pool.json")\n'
        'evaluate(pool, sem_answers: "a.jsonl", counterpart_answers: "a.jsonl", out: "ev",\n'
        '         judge: {base_url: $url, model: "m", api_key_env: "DSLRUN_LINK_TEST_KEY"})\n')
    (out / "ev").symlink_to(outside, target_is_directory=True)
    with OpenAITestServer() as srv:
        proc = dslrun("run", "spec.sel", "-q", "--out", "o", "--set", f"url={srv.base_url}", cwd=tmp_path,
                      env={"DSLRUN_LINK_TEST_KEY": "k"})
        assert srv.total == 0
    assert proc.returncode == 1 and f"refused to write {out / 'ev'}" in proc.stderr
    assert list(outside.iterdir()) == []


def test_the_temporary_file_is_not_a_planted_link(tmp_path):
    target = tmp_path / "target"
    target.write_text("keep")
    out = tmp_path / "o"
    out.mkdir()
    (out / f".x.json.tmp{os.getpid()}").symlink_to(target)
    with guard(out):
        atomic_write(out / "x.json", lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "keep" and (out / "x.json").read_text() == "new"
    assert sorted(p.name for p in out.iterdir()) == ["x.json"]


def test_only_guarded_folders_are_held(tmp_path):
    outside, root = tmp_path / "outside", tmp_path / "root"
    outside.mkdir()
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    make_dirs(root / "link" / "a")  # no run writes here: an ordinary mkdir
    assert (outside / "a").is_dir()
    with guard(root):
        with guard(root):  # nested runs on one folder
            pass
        with pytest.raises(UnsafeOutput):  # still guarded by the outer one
            make_dirs(root / "link" / "b")
    make_dirs(root / "link" / "b")
    assert (outside / "b").is_dir()


def test_unsaved_replies_never_follow_a_link(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    target = tmp_path / "target"
    target.write_text("")
    (out / "unsaved-replies.jsonl").symlink_to(target)
    side = SideFile(out)
    try:
        side.add("node", "sample", {"score": 1})
        assert target.read_text() == ""
        assert side.path is not None and side.path != out / "unsaved-replies.jsonl" and side.kept == 1
    finally:
        if side.path is not None:
            side.path.unlink(missing_ok=True)
