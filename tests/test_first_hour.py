"""A new user's first hour: the README's commands, run in the README's order on a fresh scene, all succeed;
the scene's default folder (outputs/<scene name>/) is shared by plot, preview and render without the render
refusing dfm's own files, and a folder with a file of the user's is refused before anything loads."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from deforum_files import a1111_settings

from dfm.app.cli import main
from dfm.runtime.errors import RenderError
from dfm.runtime.outdir import OWNED_FILE, check_output, open_output, owned_files, record_files

ROOT = Path(__file__).resolve().parents[1]
SCENE = 'dfm 1\nsize 64x64\nframes 3\nsteps 4\nstrength 0.5\nprompt 0 "a cat"\nzoom 0:(1.0), 2:(1.05)\n'


def readme_commands() -> list[list[str]]:
    """The `$ dfm ...` lines of the README's first console block, comments dropped, as argument lists."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```console\n(.*?)```", text, re.S)
    assert block, "README.md has no console block"
    lines = [ln[2:].split("#", 1)[0].split() for ln in block.group(1).splitlines() if ln.startswith("$ dfm ")]
    return [ln[1:] for ln in lines]


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": os.devnull})


def test_the_readmes_commands_in_the_readmes_order_all_succeed(tiny_models, tmp_path, monkeypatch, capsys):
    commands = readme_commands()
    assert [c[0] for c in commands] == ["check", "compile", "plot", "preview", "render", "diff", "import",
                                        "interpolate", "upscale"]
    (tmp_path / "scene.dfm").write_text(SCENE)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "scene.dfm")
    git(tmp_path, "commit", "-q", "-m", "scene")
    (tmp_path / "scene.dfm").write_text(SCENE.replace("1.05", "1.04"))  # an edit for `dfm diff` to show
    # an A1111 extension settings file with every one of its keys (tests/deforum_files.py: the real file stays
    # outside the project, so a plain clone has this stand-in)
    (tmp_path / "deforum_settings.txt").write_text(json.dumps(a1111_settings(), indent=4), encoding="utf-8")
    from safetensors.torch import save_file
    from test_upscale import tiny_esrgan_state

    save_file(tiny_esrgan_state(4), tmp_path / "4x.safetensors")  # the upscaler the README names
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "outputs" / "scene"
    kept: dict[str, bytes] = {}
    for args in commands:
        if args[0] == "render":
            kept = {n: (folder / n).read_bytes() for n in ("plot.png", "preview.mp4", "preview_strip.png")}
            args = [*args, "--model", str(tiny_models["folder"]), "--device", "cpu"]
        code = main(args)
        err = capsys.readouterr().err
        assert code == 0, f"dfm {' '.join(args)} exited {code}:\n{err}"
        assert "Traceback" not in err
    assert sorted(p.name for p in (folder / "frames").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert (folder / "video.mp4").is_file() and (folder / "manifest.json").is_file()
    assert {n: (folder / n).read_bytes() for n in kept} == kept  # the render left plot and preview alone
    assert (tmp_path / "table.csv").is_file() and (tmp_path / "deforum_settings.dfm").is_file()
    assert (folder / "video_x2.mp4").is_file() and (folder / "video_upscaled.mp4").is_file()


def test_plot_and_preview_record_what_they_write_in_the_default_folder(tmp_path, monkeypatch):
    (tmp_path / "scene.dfm").write_text(SCENE)
    monkeypatch.chdir(tmp_path)
    assert main(["plot", "scene.dfm"]) == 0
    assert main(["preview", "scene.dfm", "--quiet"]) == 0
    folder = Path("outputs/scene")
    assert sorted(p.name for p in folder.iterdir()) == sorted([OWNED_FILE, "plot.png", "preview.mp4",
                                                                "preview_strip.png"])
    assert json.loads((folder / OWNED_FILE).read_text()) == {
        "dfm_files": 1, "files": ["plot.png", "preview.mp4", "preview_strip.png"]}
    check_output(folder)  # all dfm's own: a render may start here
    # an explicit -o elsewhere leaves no record behind in the user's folder
    assert main(["plot", "scene.dfm", "-o", "mine/p.png"]) == 0
    assert sorted(p.name for p in Path("mine").iterdir()) == ["p.png"]


def test_a_user_file_beside_dfms_own_is_refused_before_anything_loads(tmp_path):
    """Refused by `dfm render` itself before torch is imported (the models come after torch), naming the file,
    the folder unchanged."""
    (tmp_path / "scene.dfm").write_text(SCENE)
    folder = tmp_path / "outputs" / "scene"
    record_files(folder, ["plot.png", "preview.mp4"])
    (folder / "plot.png").write_bytes(b"png")
    (folder / "notes.txt").write_text("mine")
    before = sorted(p.name for p in folder.iterdir())
    code = ("import sys; from dfm.app.cli import main; rc = main(['render', 'scene.dfm', '--model', 'nowhere', "
            "'--device', 'cpu']); print(rc, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["1", "False"], r.stderr
    assert "notes.txt" in r.stderr and "empty or new folder" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in folder.iterdir()) == before and (folder / "notes.txt").read_text() == "mine"


def test_what_the_record_of_dfms_files_allows(tmp_path):
    folder = tmp_path / "out"
    record_files(folder, ["plot.png"])
    record_files(folder, ["preview.mp4", "plot.png"])  # names add up, each once
    assert owned_files(folder) == {"plot.png", "preview.mp4"}
    (folder / "plot.png").write_bytes(b"png")
    (folder / ".preview.mp4.abcd1234.tmp").write_bytes(b"")  # a write cut short: dfm's too
    assert open_output(folder) is False
    (folder / "frames").mkdir()  # listed names only: a folder of frames the record does not list is not dfm's
    with pytest.raises(RenderError, match="frames"):
        check_output(folder)
    (folder / "frames").rmdir()
    (folder / OWNED_FILE).write_text("not json")  # a damaged record lists nothing
    with pytest.raises(RenderError, match="plot.png"):
        check_output(folder)


def test_a_hostile_record_of_the_folder_lists_nothing(tmp_path):
    """The record of the files plot and preview wrote is read within a MiB and as flat JSON: a nested or huge
    one is no record dfm wrote, so it lists nothing (and the render refuses the folder's files)."""
    (tmp_path / OWNED_FILE).write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    assert owned_files(tmp_path) == set()
    (tmp_path / OWNED_FILE).write_text('{"dfm_files": 1, "files": ["plot.png"], "pad": "' + "x" * (2 << 20) + '"}',
                                       encoding="utf-8")
    assert owned_files(tmp_path) == set()
    (tmp_path / OWNED_FILE).write_text('{"dfm_files": 1, "files": ["plot.png"]}', encoding="utf-8")
    assert owned_files(tmp_path) == {"plot.png"}
