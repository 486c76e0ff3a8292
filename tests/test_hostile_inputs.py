"""Hostile inputs (issue 21 §1): paths File name too long, files that are huge, endless or not
files at all, JSON nested past Python's recursion limit, git objects that are not UTF-8 text or not files. Each
is a clear error naming what and where (exit 1 or 2 as the docs say), never a traceback, an "internal error"
or a read of everything first."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from dfm.app.cli import main
from dfm.compiler import networks
from dfm.compiler.interop import MAX_SETTINGS_STRING, SettingsError, load_settings
from dfm.contract import families
from dfm.contract.errors import UserError
from dfm.contract.files import MAX_PATH_SHOWN, FileError, kind_of, read_limited
from dfm.runtime.errors import RenderError
from dfm.runtime.model_source import resolve_source
from dfm.scaleout.batch import MAX_LABEL, plan, variation_label

LONG = "a" * 300  # one name longer than the 255 bytes a file system allows
DEEP = b"[" * 100_000 + b"]" * 100_000  # past Python's recursion limit in json's parser
SCENE = 'dfm 1\nprompt "a lighthouse"\n'


def _never_internal(err: str) -> None:
    assert "internal error" not in err and "Traceback" not in err
    assert "permissions and free space" not in err


def _header_file(path: Path, raw: bytes) -> Path:
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


# ---- paths File name too long -------------------------------------------------------------


def test_a_too_long_path_is_a_user_error_naming_it_shortened(tmp_path):
    with pytest.raises(FileError, match="File name too long") as exc:
        kind_of(tmp_path / LONG)
    assert len(exc.value.message) < MAX_PATH_SHOWN + 200 and "characters)" in exc.value.message
    assert kind_of(tmp_path / "missing") is None and kind_of(tmp_path) == "folder"


def test_the_model_family_of_a_too_long_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="File name too long"):
        families.source_family(LONG, tmp_path)
    with pytest.raises(RenderError, match="File name too long"):
        resolve_source(str(tmp_path / (LONG + ".safetensors")))


def test_check_of_a_scene_whose_model_path_is_too_long_names_the_line(tmp_path, capsys):
    scene = tmp_path / "long.dfm"
    scene.write_text(f'dfm 1\nmodel "{LONG}"\nprompt "x"\n', encoding="utf-8")
    main(["check", str(scene)])
    err = "".join(capsys.readouterr())  # diagnostics on stdout, the summary on stderr
    _never_internal(err)
    assert "long.dfm:2:" in err and "File name too long" in err


def test_check_of_a_too_long_scene_path_exits_2(tmp_path, capsys):
    assert main(["check", str(tmp_path / (LONG + ".dfm"))]) == 2
    err = capsys.readouterr().err
    _never_internal(err)
    assert "File name too long" in err and LONG not in err


def test_a_long_varied_prompt_gets_a_short_distinct_folder_in_dry_run_too(tmp_path, capsys):
    one, two = variation_label([("prompt", "x" * 300 + "1")]), variation_label([("prompt", "x" * 300 + "2")])
    assert len(one) <= MAX_LABEL and len(two) <= MAX_LABEL and one != two
    assert variation_label([("seed", "3")]) == "seed=3"  # short labels are as they were
    scene = tmp_path / "s.dfm"
    scene.write_text(SCENE, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["batch", str(scene), "--vary", f"prompt={'y' * 300}", "--out", str(out), "--dry-run"]) == 0
    folder = capsys.readouterr().out.split("\t")[0]
    assert len(Path(folder).name) <= MAX_LABEL
    Path(folder).mkdir(parents=True)  # the file system takes it
    (job,) = plan([(str(scene), SCENE)], [], out).jobs
    assert job.key == "s"


# ---- files read whole before their limit ---------------------------------------------------------------------


@pytest.mark.parametrize("command", ["check", "import"])
def test_a_huge_sparse_file_is_refused_unread(tmp_path, capsys, command):
    big = tmp_path / ("big.dfm" if command == "check" else "big.txt")
    with open(big, "wb") as f:
        f.truncate(2 * 2**30)  # sparse: 2 GB long, nothing allocated
    assert main([command, str(big)]) == 2
    err = capsys.readouterr().err
    _never_internal(err)
    assert "2,147,483,648 bytes" in err


@pytest.mark.parametrize("command", ["check", "import"])
def test_a_device_or_a_fifo_is_refused(tmp_path, capsys, command):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        assert main([command, str(path), "-o", str(tmp_path / "o.dfm")] if command == "import"
                    else [command, str(path)]) == 2
        err = capsys.readouterr().err
        _never_internal(err)
        assert "not a regular file" in err


def test_read_limited_reads_no_more_than_its_limit(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"x" * 11)
    assert read_limited(f, 11) == b"x" * 11
    with pytest.raises(FileError, match="more than"):
        read_limited(f, 10)


def test_a_huge_string_in_a_settings_file_names_its_key(tmp_path, capsys):
    path = tmp_path / "settings.txt"
    path.write_text(json.dumps({"W": 512, "animation_prompts": {"0": "x" * (MAX_SETTINGS_STRING + 1)}}),
                    encoding="utf-8")
    assert main(["import", str(path), "-o", str(tmp_path / "s.dfm")]) == 1
    err = capsys.readouterr().err
    _never_internal(err)
    assert "`animation_prompts.0`" in err and "characters" in err
    assert not (tmp_path / "s.dfm").exists()


# ---- JSON nested past the recursion limit ------------------------------------------------------------------


def test_a_deeply_nested_settings_file_is_a_settings_error(tmp_path, capsys):
    with pytest.raises(SettingsError, match="nested"):
        load_settings(DEEP)
    with pytest.raises(SettingsError, match="nested more than"):
        load_settings(b'{"a": ' + b"[" * 150 + b"]" * 150 + b"}")  # below the recursion limit, past ours
    path = tmp_path / "deep.txt"
    path.write_bytes(b'{"W": ' + DEEP + b"}")
    assert main(["import", str(path), "-o", str(tmp_path / "s.dfm")]) == 1
    err = capsys.readouterr().err
    _never_internal(err)
    assert "nested" in err


def test_a_deeply_nested_safetensors_header_is_a_user_error(tmp_path, capsys):
    bad = _header_file(tmp_path / "deep.safetensors", DEEP)
    with pytest.raises(UserError, match="nested too deeply"):
        families.safetensors_header(bad)
    with pytest.raises(networks.NetworkFileError, match="nested too deeply"):
        networks.safetensors_header(bad)
    scene = tmp_path / "s.dfm"
    for statement in ('lora "deep.safetensors" 0.8', 'embedding "deep.safetensors"', 'model "deep.safetensors"'):
        scene.write_text(f'dfm 1\n{statement}\nprompt "x"\n', encoding="utf-8")
        main(["check", str(scene)])
        err = "".join(capsys.readouterr())
        _never_internal(err)
        assert "s.dfm:2:" in err and "nested too deeply" in err, statement


# ---- dfm diff of git objects -----------------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path, monkeypatch):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "scenes").mkdir()
    (tmp_path / "scenes" / "scene.dfm").write_text(SCENE, encoding="utf-8")
    (tmp_path / "latin1.dfm").write_bytes('dfm 1\nprompt "café"\n'.encode("latin-1"))
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "base")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_diff_of_a_committed_file_that_is_not_utf8_exits_2(repo, capsys):
    assert main(["diff", "HEAD:latin1.dfm", "scenes/scene.dfm"]) == 2
    err = capsys.readouterr().err
    _never_internal(err)
    assert "not UTF-8" in err


def test_diff_of_a_committed_folder_is_refused(repo, capsys):
    assert main(["diff", "HEAD:scenes", "scenes/scene.dfm"]) == 2
    err = capsys.readouterr().err
    _never_internal(err)
    assert "HEAD:scenes is a tree in git, not a file" in err
    assert main(["diff", "HEAD:scenes/scene.dfm", "scenes/scene.dfm"]) == 0  # a file still diffs


def test_diff_of_a_5000_character_revision_exits_2_shortened(repo, capsys):
    spec = "HEAD" + "~" * 5000 + ":scene.dfm"
    assert main(["diff", spec, "scenes/scene.dfm"]) == 2
    err = capsys.readouterr().err
    _never_internal(err)
    assert spec not in err and "characters)" in err


def test_diff_of_a_fifo_is_refused_unread(repo, capsys):
    os.mkfifo(repo / "pipe.dfm")
    assert main(["diff", "pipe.dfm", "scenes/scene.dfm"]) == 2
    err = capsys.readouterr().err
    _never_internal(err)
    assert "not a regular file" in err
