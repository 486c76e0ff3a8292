"""Instant commands: only `render` (and `batch`, which renders) imports torch, diffusers, transformers.

Each command runs in a fresh interpreter on a tiny scene; at exit the interpreter writes which heavy
modules it had imported. `preview` is among them: the camera over a test card is numpy and OpenCV.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "torchvision", "diffusers", "transformers", "accelerate")
ROOT = Path(__file__).resolve().parents[1]

# runs `dfm ARGS...` in this interpreter and records the heavy modules loaded, whatever the exit (atexit
# also runs after argparse's SystemExit for --help)
PROBE = f"""
import atexit, json, os, sys

def _dump():
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
    with open(os.environ["DFM_PROBE_OUT"], "w") as f:
        json.dump(heavy, f)

atexit.register(_dump)
from dfm.app.cli import main
sys.exit(main(sys.argv[1:]))
"""

SCENE = 'dfm 1\nsize 64x64\nfps 8\nframes 6\nprompt 0 "a cat"\nzoom 0:(1.02)\nangle 0:(1)\n'
SCENE_3D = 'dfm 1\nmode 3d\nsize 64x64\nfps 8\nframes 4\nprompt 0 "a cat"\ntranslation_z 0:(5)\n'


def heavy_modules(args: list[str], cwd: Path) -> tuple[int, list[str], str]:
    out = cwd / "probe.json"
    env = {**os.environ, "DFM_PROBE_OUT": str(out), "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)  # `lsp` ends at the end of its input
    return proc.returncode, json.loads(out.read_text()), proc.stderr


COMMANDS = {
    "help": ["--help"],
    "check": ["check", "s.dfm"],
    "fmt": ["fmt", "--check", "s.dfm"],
    "compile": ["compile", "s.dfm", "-o", "t.csv"],
    "compile json": ["compile", "s.dfm", "--format", "json", "-o", "t.json"],
    "plot": ["plot", "s.dfm", "-o", "p.png"],
    "preview": ["preview", "s.dfm", "-o", "p.mp4", "--quiet"],
    "preview 3d": ["preview", "s3.dfm", "-o", "p3.mp4", "--quiet"],
    "export": ["export", "s.dfm", "-o", "deforum.json"],
    "diff": ["diff", "s.dfm", "s3.dfm"],
    "explain": ["explain", "DFM101"],
    "lsp": ["lsp"],  # the language server, its input at an end at once (the LSP session is tests/test_lsp.py's)
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_commands_other_than_render_never_import_torch(name, tmp_path):
    (tmp_path / "s.dfm").write_text(SCENE)
    (tmp_path / "s3.dfm").write_text(SCENE_3D)
    code, heavy, err = heavy_modules(COMMANDS[name], tmp_path)
    assert code in (0, 1), err  # fmt --check may find the scene not canonical; neither is a crash
    assert heavy == [], f"`dfm {' '.join(COMMANDS[name])}` imported {heavy}"


def test_import_never_imports_torch(tmp_path):
    (tmp_path / "s.dfm").write_text(SCENE)
    assert heavy_modules(["export", "s.dfm", "-o", "deforum.json"], tmp_path)[0] == 0
    code, heavy, err = heavy_modules(["import", "deforum.json", "-o", "back.dfm"], tmp_path)
    assert code == 0, err
    assert heavy == []


def test_the_probe_sees_torch_when_it_is_imported(tmp_path):
    """The probe itself works: a command that does import torch is caught."""
    out = tmp_path / "probe.json"
    env = {**os.environ, "DFM_PROBE_OUT": str(out)}
    code = "import dfm.runtime.warp\n" + PROBE
    subprocess.run([sys.executable, "-c", code, "--help"], cwd=tmp_path, env=env, capture_output=True, timeout=120)
    assert "torch" in json.loads(out.read_text())
