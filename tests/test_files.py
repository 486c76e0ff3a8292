"""Written files follow the umask; rewritten files keep their mode (issue 8, item 12)."""

from __future__ import annotations

import os
import stat

from dfm.app.cli import main
from dfm.contract.files import write_atomic


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_file_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    os.umask(old)
    write_atomic(tmp_path / "new.txt", "x")
    assert mode(tmp_path / "new.txt") == 0o666 & ~old
    assert [p.name for p in tmp_path.iterdir()] == ["new.txt"]  # no temp file left


def test_a_rewritten_file_keeps_its_mode(tmp_path):
    p = tmp_path / "kept.txt"
    p.write_text("old")
    os.chmod(p, 0o640)
    write_atomic(p, "new")
    assert p.read_text() == "new" and mode(p) == 0o640


def test_fmt_keeps_the_scene_readable(tmp_path):
    scene = tmp_path / "s.dfm"
    scene.write_text('dfm 1\nprompt   0 "a"\n')
    os.chmod(scene, 0o644)
    before = scene.read_text()
    assert main(["fmt", str(scene)]) == 0
    assert scene.read_text() != before and mode(scene) == 0o644  # rewritten, still readable by others
