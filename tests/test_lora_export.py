"""Deforum export of `lora` and `embedding` statements (compiler/deforum_export.py `networks`).

The A1111 extension has no LoRA or embedding setting: A1111 reads `<lora:stem:w>` tags in the prompt and
finds the file by stem in its models/Lora folder. A constant-weight LoRA whose file is in the scene's
`lora_dir` becomes such a tag on every exported prompt (with a warning that the webui needs the file);
every other LoRA and every embedding is a warning through `Exporter.unsupported`, never a silent loss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from dfm.compiler.compile import compile_source
from dfm.compiler.deforum_export import export_settings
from dfm.compiler.interop import Level


def _lora(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"lora_unet_mid.lora_down.weight": np.zeros((2, 4), np.float32),
               "lora_unet_mid.lora_up.weight": np.zeros((4, 2), np.float32)}, str(path))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("loras/film.safetensors", "loras/styles/grain.safetensors", "loras/fade.safetensors",
                 "elsewhere/other.safetensors"):
        _lora(tmp_path / name)
    (tmp_path / "emb").mkdir()
    save_file({"emb_params": np.zeros((2, 8), np.float32)}, str(tmp_path / "emb" / "mystyle.safetensors"))
    return tmp_path


def export(folder: Path, body: str, mode: str = "2d"):
    text = f'dfm 1\nmode {mode}\nframes 3\nsize 64x64\n{body}\nprompt 0 "a cat"\nprompt 2 "a dog --neg blurry"\n'
    result = compile_source(text, str(folder / "s.dfm"))
    assert result.ok, [d.message for d in result.errors]
    return export_settings(result)


def lora_notes(out) -> list[str]:
    return [n.reason for n in out.unsupported if n.param == "lora"]


def test_a_constant_lora_in_lora_dir_becomes_a_tag_on_every_prompt(folder):
    out = export(folder, 'lora_dir "loras"\nlora "loras/film.safetensors" 0.8\n'
                 'lora "loras/styles/grain.safetensors" 0:(0.5), 2:(0.5)')
    prompts = out.settings["prompts"]
    assert prompts == {"0": "a cat <lora:film:0.8> <lora:grain:0.5>",
                       "2": "a dog <lora:film:0.8> <lora:grain:0.5> --neg blurry"}
    notes = [n for n in out.unsupported if n.param == "lora"]
    assert len(notes) == 2 and all(n.level is Level.REWRITTEN for n in notes)
    assert "film.safetensors in its models/Lora folder" in notes[0].reason
    assert any("`<lora:grain:0.5>`" in w for w in out.warnings)


def test_a_lora_without_a_weight_is_weight_1_and_stills_get_the_tag_too(folder):
    out = export(folder, 'lora_dir "loras"\nlora "loras/film.safetensors"', mode="none")
    assert set(out.settings["prompts"].values()) == {"a cat <lora:film:1>", "a dog <lora:film:1> --neg blurry"}


@pytest.mark.parametrize("body, why", [
    ('lora_dir "loras"\nlora "loras/fade.safetensors" 0:(0), 2:(1)', "its weight changes over the frames"),
    ('lora_dir "loras"\nlora "loras/fade.safetensors" 0:(0.2 + t / 10)', "its weight changes over the frames"),
    ('lora_dir "loras"\nlora "elsewhere/other.safetensors" 0.5', "not in the scene's `lora_dir`"),
    ('lora "loras/film.safetensors" 0.5', "not in the scene's `lora_dir`"),  # no lora_dir at all
    ('lora "someone/film-lora" 0.7', "it is a hub id"),
])
def test_a_lora_that_cannot_be_a_tag_is_a_warning_saying_how_to_carry_it(folder, body, why):
    out = export(folder, body)
    (reason,) = lora_notes(out)
    assert why in reason and "left out" in reason and "models/Lora" in reason
    assert "<lora:" not in "".join(out.settings["prompts"].values())  # nothing half-written into the prompts
    assert [n.level for n in out.unsupported if n.param == "lora"] == [Level.LOST]


def test_only_the_loras_that_can_be_tags_are_tagged(folder):
    out = export(folder, 'lora_dir "loras"\nlora "elsewhere/other.safetensors" 0.5\nlora "loras/film.safetensors" 0.3')
    assert out.settings["prompts"]["0"] == "a cat <lora:film:0.3>"
    assert len(lora_notes(out)) == 2


def test_an_embedding_is_a_warning_naming_its_file(folder):
    out = export(folder, 'embedding "emb/mystyle.safetensors"')
    (note,) = [n for n in out.unsupported if n.param == "embedding"]
    assert "mystyle.safetensors" in note.reason and "embeddings folder" in note.reason
    assert note.level is Level.LOST


def test_a_scene_without_networks_exports_its_prompts_unchanged(folder):
    out = export(folder, "")
    assert out.settings["prompts"] == {"0": "a cat", "2": "a dog --neg blurry"}
    assert not [n for n in out.unsupported if n.param in ("lora", "embedding")]
