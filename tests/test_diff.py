"""`dfm diff OLD NEW`: per changed statement the frames whose values change and the first frame whose render
differs, from the rule the renderer uses; files or git revisions; text and JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from test_incremental import BASE, EDITS

from dfm.api import compile_result
from dfm.app.cli import main
from dfm.app.diff import compare_scenes
from dfm.contract import changes


def diff_json(tmp_path, capsys, old: str, new: str, *extra: str) -> dict:
    (tmp_path / "old.dfm").write_text(old, encoding="utf-8")
    (tmp_path / "new.dfm").write_text(new, encoding="utf-8")
    assert main(["diff", str(tmp_path / "old.dfm"), str(tmp_path / "new.dfm"), "--format", "json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", list(EDITS))
def test_the_first_frame_is_the_renderers(name):
    text, first = EDITS[name]
    old, new = compile_result(BASE, "scene.dfm"), compile_result(text, "scene.dfm")
    d = compare_scenes(old, new)
    assert d.first_frame == first == changes.compare(old.table, new.table).first_frame


def test_a_prompt_change_names_its_statement_frames_and_first_frame(tmp_path, capsys):
    data = diff_json(tmp_path, capsys, BASE, EDITS["prompt"][0])
    assert data["first_frame"] == 6 and data["frames"] == 10 and data["rendered"] == [[6, 9]]
    (entry,) = data["changes"]
    assert entry["parameter"] == "prompt" and entry["at"] == 5
    assert entry["old"] == ['prompt 5 "a dog"'] and entry["new"] == ['prompt 5 "a bird"']
    assert entry["frames"] == [[5, 9]] and entry["first_frame"] == 6 and entry["line"] == {"old": 13, "new": 13}


def test_a_comment_or_formatting_change_renders_identically(tmp_path, capsys):
    spaced = EDITS["comment"][0].replace("zoom 0:(1.02)", "zoom     0:( 1.02 )")
    data = diff_json(tmp_path, capsys, BASE, spaced)
    assert data["first_frame"] is None and data["changes"] == []


def test_several_changes_each_get_their_own_first_frame(tmp_path, capsys):
    new = EDITS["key"][0].replace('prompt 5 "a dog"', 'prompt 5 "a bird"').replace("frames 10", "frames 12")
    data = diff_json(tmp_path, capsys, BASE, new)
    got = {e["parameter"]: (e["frames"], e["first_frame"]) for e in data["changes"]}
    assert got == {"frames": ([[10, 11]], 10), "prompt": ([[5, 9]], 6), "translation_x": ([[7, 9]], 7)}
    assert data["first_frame"] == 6


def test_settings_every_frame_depends_on_and_video_only_ones(tmp_path, capsys):
    new = BASE.replace("sampler euler", "sampler dpmpp_2m").replace("fps 12", "fps 12\nvideo_crf 20")
    data = diff_json(tmp_path, capsys, BASE, new)
    effects = {e["parameter"]: (e["effect"], e["first_frame"]) for e in data["changes"]}
    assert effects == {"sampler": ("frames", 0), "video_crf": ("video", None)} and data["first_frame"] == 0


def test_a_change_no_frame_reads_is_listed_without_a_first_frame(tmp_path, capsys):
    data = diff_json(tmp_path, capsys, BASE, BASE + 'prompt 12 "a bird"\n')
    (entry,) = data["changes"]
    assert entry["new"] == ['prompt 12 "a bird"'] and entry["effect"] == "none" and data["first_frame"] is None


def test_the_text_form(tmp_path, capsys):
    (tmp_path / "a.dfm").write_text(BASE, encoding="utf-8")
    (tmp_path / "b.dfm").write_text(EDITS["prompt"][0], encoding="utf-8")
    assert main(["diff", str(tmp_path / "a.dfm"), str(tmp_path / "b.dfm")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("renders differ from frame 6; frames 0–5 stay the same")
    assert out[1:] == ["prompt 5 (line 13)", '  - prompt 5 "a dog"', '  + prompt 5 "a bird"',
                       "  values change at frames 5–9; renders differ from frame 6"]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_git_revision(tmp_path, capsys, monkeypatch):
    def git(*args):
        subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=tmp_path,
                       check=True, capture_output=True)

    (tmp_path / "scenes").mkdir()
    scene = tmp_path / "scenes/scene.dfm"
    scene.write_text(BASE, encoding="utf-8")
    git("init", "-q")
    git("add", "scenes/scene.dfm")
    git("commit", "-q", "-m", "base")
    scene.write_text(EDITS["key"][0], encoding="utf-8")
    monkeypatch.chdir(tmp_path / "scenes")
    assert main(["diff", "HEAD:scenes/scene.dfm", "scene.dfm", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["first_frame"] == 7
    assert main(["diff", "HEAD:./scene.dfm", "scene.dfm", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["first_frame"] == 7
    assert main(["diff", "HEAD~5:scene.dfm", "scene.dfm"]) == 2
    assert "git cannot read it" in capsys.readouterr().err


def test_errors_and_missing_files(tmp_path, capsys):
    (tmp_path / "good.dfm").write_text(BASE, encoding="utf-8")
    (tmp_path / "bad.dfm").write_text(BASE.replace("zoom 0:(1.02)", "zoom 0:(1,02)"), encoding="utf-8")
    assert main(["diff", str(tmp_path / "good.dfm"), str(tmp_path / "bad.dfm")]) == 1
    assert "DFM011" in capsys.readouterr().err
    assert main(["diff", str(tmp_path / "good.dfm"), str(tmp_path / "nope.dfm")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_a_revision_that_looks_like_an_option_reaches_no_git(tmp_path, monkeypatch):
    from dfm.app import diff

    monkeypatch.setattr(diff, "_git", lambda *a: pytest.fail("git was run"))
    with pytest.raises(diff.DiffError, match="does not start with `-`"):
        diff.load_version(f"--output={tmp_path / 'x'}:y", tmp_path)
    assert not (tmp_path / "x").exists()


def test_the_diff_imports_no_torch(tmp_path):
    """Not at import and not while it runs: a whole `dfm diff` in a fresh interpreter."""
    (tmp_path / "old.dfm").write_text(BASE, encoding="utf-8")
    (tmp_path / "new.dfm").write_text(EDITS["prompt"][0], encoding="utf-8")
    code = ("import sys; from dfm.app.cli import main; "
            "code = main(['diff', 'old.dfm', 'new.dfm', '--format', 'json']); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(code)")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["first_frame"] == 6  # the diff ran and found the prompt change


def test_a_native_weighted_prompt_is_grouped_with_the_prompt_it_replaces(tmp_path, capsys):
    """A prompt written in the native `weight … and …` form without a time holds from frame 0, as a plain one."""
    native = 'prompt "a cat" weight 0.5 and "a hat" weight 1'
    data = diff_json(tmp_path, capsys, BASE, BASE.replace('prompt 0 "a cat"', native))
    (entry,) = data["changes"]
    assert entry["parameter"] == "prompt" and entry["at"] == 0 and entry["first_frame"] == 0
    assert entry["old"] == ['prompt 0 "a cat"'] and entry["new"] == [native]
