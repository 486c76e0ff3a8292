"""The `dfm` command line: exit codes, output formats, atomic writes, start-up without torch."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dfm.app.cli import main

GOOD = 'dfm 1\nframes 6\nprompt 0 "a cat"\nzoom 0:(1.0), 5:(1.05)\n'
BAD = 'dfm 1\nframes 6\nprompt 0 "a cat"\nzoom 0:(1,04)\nsampler eulr\n'
WARN = 'dfm 1\nframes 6\nprompt 0 "a cat"\nrotation_3d_x 1\n'


@pytest.fixture
def scene(tmp_path):
    def make(text: str, name: str = "s.dfm") -> str:
        p = tmp_path / name
        p.write_text(text)
        return str(p)
    return make


def test_check_exit_codes(scene, capsys):
    assert main(["check", scene(GOOD)]) == 0
    assert main(["check", scene(BAD, "bad.dfm")]) == 1
    out = capsys.readouterr().out
    assert "bad.dfm:4:9: error[DFM011]" in out and "help: use a dot: 1.04" in out and "^^^^" in out
    assert "error[DFM102]" in out  # every error, not only the first
    assert main(["check", "/nonexistent.dfm"]) == 2


def test_warnings_fail_only_under_strict(scene):
    path = scene(WARN)
    assert main(["check", path]) == 0
    assert main(["check", "--strict", path]) == 1


def test_check_json_for_editors(scene, capsys):
    main(["check", "--format", "json", scene(BAD)])
    data = json.loads(capsys.readouterr().out)
    assert [d["code"] for d in data] == ["DFM011", "DFM102"]
    assert data[0]["span"]["line"] == 4 and data[0]["severity"] == "error" and data[0]["help"]


def test_check_concise(scene, capsys):
    main(["check", "--format", "concise", scene(BAD)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].endswith("decimal comma in the number `1,04`")


def test_fmt_check_and_write(scene, capsys):
    path = scene("dfm 1\nzoom   1.02\n")
    assert main(["fmt", "--check", path]) == 1
    assert Path(path).read_text() == "dfm 1\nzoom   1.02\n"  # --check writes nothing
    assert main(["fmt", "--diff", path]) == 1
    assert "+zoom 1.02" in capsys.readouterr().out
    assert main(["fmt", path]) == 0
    assert Path(path).read_text() == "dfm 1\nzoom 1.02\n"
    assert main(["fmt", "--check", path]) == 0
    assert not list(Path(path).parent.glob(".*.tmp"))


def test_fmt_refuses_broken_files(scene):
    path = scene(BAD)
    assert main(["fmt", path]) == 1
    assert Path(path).read_text() == BAD


def test_compile_formats(scene, tmp_path, capsys):
    path = scene(GOOD)
    assert main(["compile", path]) == 0
    csv = capsys.readouterr().out.splitlines()
    assert csv[0].startswith("frame,time,") and len(csv) == 7
    out = tmp_path / "t.json"
    assert main(["compile", path, "-o", str(out), "--format", "json"]) == 0
    data = json.loads(out.read_text())
    assert data["format_version"] == 2 and data["frames"] == 6 and data["columns"]["zoom"][-1] == 1.05
    assert main(["compile", scene(BAD, "b.dfm")]) == 1


def test_explain(capsys):
    assert main(["explain", "DFM011"]) == 0
    assert "decimal comma" in capsys.readouterr().out
    assert main(["explain", "DFM999"]) == 2


def test_no_command_is_a_usage_error():
    assert main([]) == 2


def test_usage_errors_do_not_traceback(scene, capsys):
    folder = Path(scene(GOOD)).parent
    assert main(["check", str(folder)]) == 2
    binary = folder / "bin.dfm"
    binary.write_bytes(b"\xff\xfe\x00")
    assert main(["check", str(binary)]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_check_does_not_import_torch(scene):
    code = ("import sys; from dfm.app.cli import main; main(['check', sys.argv[1]]); "
            "bad = [m for m in ('torch', 'diffusers', 'transformers', 'matplotlib', 'cv2') if m in sys.modules]; "
            "print('HEAVY', bad)")
    out = subprocess.run([sys.executable, "-c", code, scene(GOOD)], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout


def test_python_dash_m_dfm(scene):
    r = subprocess.run([sys.executable, "-m", "dfm", "check", scene(BAD)], capture_output=True, text=True)
    assert r.returncode == 1 and "DFM011" in r.stdout


def test_render_through_the_command_line(tiny_models, tmp_path, capsys):
    """dfm render with --model and --depth-model overrides: every frame, the video, no traceback."""
    from tiny_models import save_depth_models

    depth = save_depth_models(tmp_path / "depth")["dpt"]
    scene_path = tmp_path / "fly.dfm"
    scene_path.write_text('dfm 1\nmode 3d\nsize 64x64\nframes 3\nsteps 2\nprompt 0 "a cat"\n'
                          'translation_z 2\nsave_depth_maps on\ndepth_model "missing-model"\n')
    out = tmp_path / "out"
    args = ["render", str(scene_path), "--out", str(out), "--model", str(tiny_models["folder"]), "--device", "cpu",
            "--quiet"]
    assert main(args) == 1  # the scene's depth model does not exist: a clear error, not a traceback
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    assert main(args + ["--depth-model", str(depth)]) == 0
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert len(list((out / "depth").iterdir())) == 3 and (out / "video.mp4").exists()


def test_export_then_import_round_trip_through_the_command_line(tmp_path, capsys):
    scene_path = tmp_path / "s.dfm"
    scene_path.write_text('dfm 1\nframes 12\nprompt 0 "a cat --neg dark"\nprompt 6 "a dog"\n'
                          "zoom 0:(1.0), 6:(1.04) ease_in, 11:(1.0)\nstrength 0.6\ncadence 2\n")
    settings = tmp_path / "settings.json"
    assert main(["export", str(scene_path), "-o", str(settings)]) == 0
    data = json.loads(settings.read_text())
    assert data["max_frames"] == 12 and data["prompts"]["0"] == "a cat --neg dark"
    assert "ease_in" in capsys.readouterr().err  # the approximated curve is warned about
    back = tmp_path / "back.dfm"
    assert main(["import", str(settings), "-o", str(back)]) == 0
    from dfm.api import compile_text

    a, b = compile_text(scene_path.read_text()), compile_text(back.read_text())
    for col in ("zoom", "strength"):
        assert list(a[col]) == pytest.approx(list(b[col]), abs=1e-9), col
    for col in ("seed", "prompt", "negative_prompt", "diffused"):
        assert list(a[col]) == list(b[col]), col


def test_import_reports_bad_json_cleanly(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text('{"W": 512,, }')
    assert main(["import", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "not valid JSON" in err and "help:" in err and "Traceback" not in err


def test_compile_parseq_and_import_it_back(tmp_path):
    scene_path = tmp_path / "s.dfm"
    scene_path.write_text('dfm 1\nframes 8\nprompt 0 "a cat"\nangle 0:(0), 7:(7)\n')
    manifest = tmp_path / "m.json"
    assert main(["compile", str(scene_path), "--format", "parseq", "-o", str(manifest)]) == 0
    frames = json.loads(manifest.read_text())["rendered_frames"]
    assert len(frames) == 8 and frames[3]["angle_delta"] == pytest.approx(3.0)
    back = tmp_path / "back.dfm"
    assert main(["import", str(manifest), "-o", str(back)]) == 0  # recognised as a Parseq manifest
    from dfm.api import compile_text

    assert list(compile_text(back.read_text())["angle"]) == pytest.approx(list(range(8)))


def test_import_the_real_a1111_settings_file(tmp_path, capsys):
    """A settings file with every key of the A1111 extension's default file (tests/deforum_files.py)."""
    from deforum_files import a1111_settings

    settings = tmp_path / "a1111-default_settings.txt"
    settings.write_text(json.dumps(a1111_settings(), indent=4))
    out = tmp_path / "a1111.dfm"
    assert main(["import", str(settings), "-o", str(out)]) == 0
    lines = capsys.readouterr().err.splitlines()
    # what changes the render leads; the ~20 groups of keys that do nothing are one line, not buried warnings
    assert lines[0].endswith("the render will differ from Deforum's:")
    differs = [ln for ln in lines if ": warning: " in ln]
    assert any("noise multiplier" in ln and "IN USE" in ln for ln in differs)
    assert not any("nothing is lost" in ln or "ControlNet" in ln for ln in lines)
    assert [ln for ln in lines if ": note: " in ln and "seed -1" in ln]
    left_out = [ln for ln in lines if "do nothing to the render" in ln]
    assert len(left_out) == 1 and "--all-warnings" in left_out[0]
    assert lines.index(differs[-1]) < lines.index(left_out[0]) and len(lines) < 15
    assert main(["check", str(out)]) == 0
    # --all-warnings: every warning the import made, the dropped groups included
    assert main(["import", str(settings), "-o", str(out), "--force", "--all-warnings"]) == 0
    err = capsys.readouterr().err
    assert "left out: ignored 12 mask keys" in err and "nothing is lost" in err
    assert "--all-warnings lists them" not in err


def test_plot_command(tmp_path):
    scene_path = tmp_path / "s.dfm"
    scene_path.write_text('dfm 1\nframes 8\nprompt 0 "a cat"\nangle 0:(0), 7:(7)\n')
    png = tmp_path / "p.png"
    assert main(["plot", str(scene_path), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(scene_path), "-o", str(png), "--params", "nope"]) == 2


def test_import_never_overwrites_a_scene_without_force(tmp_path):
    settings = tmp_path / "deforum.txt"
    settings.write_text(json.dumps({"max_frames": 10, "prompts": {"0": "a cat"}}))
    scene = tmp_path / "deforum.dfm"
    scene.write_text("# my edits\n")
    assert main(["import", str(settings)]) == 2
    assert scene.read_text() == "# my edits\n"
    assert main(["import", str(settings), "--force"]) == 0 and "a cat" in scene.read_text()


def test_check_reports_every_readable_file_before_a_missing_one(tmp_path, capsys):
    a, b = tmp_path / "a.dfm", tmp_path / "b.dfm"
    a.write_text('dfm 1\nprompt 0 "x"\nzoom 0:(1,04)\n')
    b.write_text('dfm 1\nprompt 0 "y"\nfoo 1\n')
    assert main(["check", str(a), str(b), str(tmp_path / "missing.dfm"), "--format", "concise"]) == 2
    out, err = capsys.readouterr()
    assert "DFM011" in out and "DFM101" in out and "missing.dfm: no such file" in err


def test_an_unwritable_output_is_a_user_error(tmp_path, capsys, monkeypatch):
    scene = tmp_path / "s.dfm"
    scene.write_text('dfm 1\nframes 4\nprompt 0 "x"\n')

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied", str(tmp_path / "ro" / "t.csv"))

    monkeypatch.setattr("dfm.contract.files.write_atomic", refuse)
    assert main(["compile", str(scene), "-o", str(tmp_path / "ro" / "t.csv")]) == 1
    err = capsys.readouterr().err
    assert "Permission denied" in err and "help:" in err and "internal error" not in err


@pytest.mark.parametrize("command", [["compile", "--format", "csv"], ["export"]])
def test_o_never_writes_over_the_scene_itself(scene, capsys, command):
    path = scene(GOOD)
    assert main([command[0], path, *command[1:], "-o", path]) == 2
    assert Path(path).read_text() == GOOD
    assert "is the scene itself" in capsys.readouterr().err


def test_any_user_error_is_printed_once_with_its_help(scene, capsys, monkeypatch):
    from dfm.contract.errors import UserError
    from dfm.runtime.errors import RenderError

    def fail(args):
        raise RenderError("the model is not there", "pass --model")

    monkeypatch.setattr("dfm.app.commands.check.run", fail)
    assert main(["check", scene(GOOD)]) == 1
    err = capsys.readouterr().err
    assert "dfm check: error: the model is not there\nhelp: pass --model" in err and "internal error" not in err

    class Setup(UserError):
        exit_code = 2

    monkeypatch.setattr("dfm.app.commands.check.run", lambda args: (_ for _ in ()).throw(Setup("no cluster")))
    assert main(["check", scene(GOOD)]) == 2


def test_model_family_notes_are_said_by_check_and_render_only(tmp_path, capsys, monkeypatch):
    from dfm.app.console import compile_file

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))  # the family is told from the hub id's name
    scene = tmp_path / "s.dfm"
    scene.write_text('dfm 1\nprompt 0 "a cat"\nmodel "stabilityai/sdxl-turbo"\nframes 4\n')
    assert main(["check", str(scene)]) == 0
    out, _ = capsys.readouterr()
    assert "DFM207" in out
    for command in (["compile", "-o", str(tmp_path / "t.csv")], ["export", "-o", str(tmp_path / "d.json")],
                    ["plot", "-o", str(tmp_path / "p.png")]):
        assert main([command[0], str(scene), *command[1:]]) == 0
        assert "DFM207" not in capsys.readouterr().err, command
    assert compile_file(str(scene), notes=True) is not None  # what `dfm render` prints before loading models
    assert "DFM207" in capsys.readouterr().err


@pytest.mark.parametrize(("mode", "meant"), [("2d", "angle"), ("3d", "rotation_3d_z")])
def test_rotation_suggests_the_turn_of_the_scenes_mode(tmp_path, capsys, mode, meant):
    scene = tmp_path / "s.dfm"
    # the mode comes after the misspelling: the suggestion still fits it
    scene.write_text(f'dfm 1\nprompt 0 "x"\nrotation 0:(1)\nmode {mode}\n')
    assert main(["check", str(scene)]) == 1
    out = capsys.readouterr().out
    assert "DFM101" in out and f"help: did you mean `{meant}`?" in out


def test_a_near_miss_suggests_a_parameter_of_the_scenes_mode_first(tmp_path, capsys):
    scene = tmp_path / "s.dfm"
    scene.write_text('dfm 1\nmode 3d\nprompt 0 "x"\nangel 0:(1)\ntranslaton_z 0:(1)\n')
    assert main(["check", str(scene)]) == 1
    out = capsys.readouterr().out
    assert "did you mean `angle`? (it is read only in mode 2d, not in 3d)" in out
    assert "did you mean `translation_z`?" in out
