"""A sharded render (`dfm render --ray`, scaleout/shard.py) is a local render: with a LoRA, under speed-up switches,
with its fingerprint (an edited LoRA file renders again), its UNet evaluations and its manifest. LocalPool runs
the Ray worker's code (runtime/actor.py) in this process, so none of this needs Ray."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_lora import _lora_state

from dfm.api import compile_text
from dfm.app.cli import main
from dfm.runtime import speedups
from dfm.runtime.render import render
from dfm.scaleout import cluster
from dfm.scaleout.cluster import LocalPool
from dfm.scaleout.shard import render_sharded

# stills (frames independent: they shard); the LoRA's weight changes per frame, so it is not fused and the
# worker's FrameNetworks (networks.for_renderer) sets it at every frame; the AND prompt counts 3 UNet items
STILLS = """dfm 1
mode none
size 64x64
images_per_prompt 2
steps 3
seed 9
sampler euler
model "{model}"
lora "film.safetensors" 0:(0.2), 3:(0.9)
prompt 0 "a cat AND a hat"
prompt 1 "a dog"
"""


@pytest.fixture(scope="module")
def lora_scene(tiny_models, tmp_path_factory):
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("parity")
    save_file(_lora_state(tiny_models["folder"], seed=5), str(folder / "film.safetensors"))
    path = folder / "stills.dfm"
    path.write_text(STILLS.format(model=tiny_models["folder"]), encoding="utf-8")
    return path


def frames(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "frames").iterdir())}


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def table_of(scene: Path):
    return compile_text(scene.read_text(encoding="utf-8"), str(scene))


def test_a_sharded_render_with_a_lora_is_the_local_render_and_an_edited_lora_renders_again(lora_scene, tmp_path):
    table = table_of(lora_scene)
    assert table.settings.lora and len(set(table["lora_weights"])) > 1  # a per-frame weight: not fused
    ref = tmp_path / "local"
    local = render(table, ref, scene_path=str(lora_scene), device="cpu")
    out = tmp_path / "sharded"
    with LocalPool("cpu") as pool:
        report = render_sharded(table, out, pool, scene_path=str(lora_scene), chunk=1)
        worker = pool.slots[0].handle
        sd = worker._sd[1]
        assert "film" in str(sd.__dict__.get("_dfm_networks").key)  # installed on the worker's model
    assert frames(out) == frames(ref) and len(frames(ref)) == 4
    plain = render(compile_text(lora_scene.read_text().replace('lora "film.safetensors" 0:(0.2), 3:(0.9)\n', ""),
                                str(lora_scene)), tmp_path / "plain", scene_path=str(lora_scene), device="cpu")
    assert plain.frames == 4 and frames(tmp_path / "plain") != frames(ref)  # the LoRA did change the frames

    # UNet batch items: the table's sum, counted alike on both paths; the manifests say so, with the switches
    evals = int(table["unet_evals"].sum())
    assert report.unet_evals == local.unet_evals == evals > 0
    assert manifest(out)["unet_evals"] == manifest(ref)["unet_evals"] == evals
    assert manifest(out)["speedups"] == manifest(ref)["speedups"] == "attention=sdpa channels_last=off " \
        "vae_tiling=off compile=off"

    # the same fingerprint: a local render over the sharded folder keeps every frame, and the other way round
    again = render(table, out, scene_path=str(lora_scene), device="cpu")
    assert again.kept_frames == 4 and again.unet_calls == 0
    with LocalPool("cpu") as pool:
        again = render_sharded(table, ref, pool, scene_path=str(lora_scene))
    assert again.kept_frames == 4 and again.kept and again.unet_calls == 0 and again.unet_evals == 0

    # the LoRA file changed in place (same path, same scene): the sharded rerun renders every frame again
    lora = lora_scene.parent / "film.safetensors"
    before = lora.read_bytes()
    try:
        from safetensors.torch import save_file

        save_file(_lora_state(Path(table.settings.model), seed=6), str(lora))
        st = lora.stat()
        os.utime(lora, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a newer stamp even on a coarse clock
        with LocalPool("cpu") as pool:
            redone = render_sharded(table, out, pool, scene_path=str(lora_scene))
        assert redone.kept_frames == 0 and redone.unet_evals == evals
        fresh = tmp_path / "fresh"
        render(table, fresh, scene_path=str(lora_scene), device="cpu")
        assert frames(out) == frames(fresh) != frames(ref)
    finally:
        lora.write_bytes(before)


def test_the_speed_up_switches_apply_on_the_workers_as_on_a_local_render(lora_scene, tmp_path):
    table = table_of(lora_scene)
    math = speedups.Speedups(attention="math", vae_tiling="on")
    ref = tmp_path / "local"
    render(table, ref, scene_path=str(lora_scene), device="cpu", speed=math)
    out = tmp_path / "sharded"
    with LocalPool("cpu", dtype="fp32") as pool:
        render_sharded(table, out, pool, scene_path=str(lora_scene), speed=math)
        sd = pool.slots[0].handle._sd[1]
        assert speedups.attention_processors(sd.unet, sd.vae) == "AttnProcessor"
        assert sd.vae.use_tiling
    assert frames(out) == frames(ref)
    assert manifest(out)["speedups"] == manifest(ref)["speedups"] == "attention=math channels_last=off " \
        "vae_tiling=on compile=off"
    # other switches are another render: the default ones do not resume or keep the math-attention frames
    with LocalPool("cpu") as pool:
        other = render_sharded(table, out, pool, scene_path=str(lora_scene))
    assert other.kept_frames == 0 and other.unet_calls > 0
    render(table, tmp_path / "default", scene_path=str(lora_scene), device="cpu")
    assert frames(out) == frames(tmp_path / "default")


def test_render_ray_accepts_the_switches(lora_scene, tmp_path, monkeypatch, capsys):
    # Ray itself is tested in test_batch.py: here the pool `dfm render --ray` opens is this process's
    opened = []

    def local_pool(ray, **kwargs):
        opened.append(kwargs)
        return LocalPool(kwargs["device"], dtype=kwargs["dtype"], allow_pickle=kwargs["allow_pickle"])

    monkeypatch.setattr(cluster, "open_pool", local_pool)
    out = tmp_path / "ray"
    assert main(["render", str(lora_scene), "--ray", "local", "--device", "cpu", "--dtype", "fp32",
                 "--attention", "math", "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    assert opened[0]["dtype"] == "fp32"
    assert main(["render", str(lora_scene), "--device", "cpu", "--attention", "math", "--out", str(tmp_path / "l"),
                 "--quiet"]) == 0
    assert frames(out) == frames(tmp_path / "l")
    assert manifest(out)["speedups"].startswith("attention=math") and manifest(out)["dtype"] == "float32"
    # a precision the device lacks is the command's clear error, before any frame
    assert main(["render", str(lora_scene), "--ray", "local", "--device", "cpu", "--dtype", "fp16",
                 "--out", str(tmp_path / "x"), "--quiet"]) != 0
    err = capsys.readouterr().err
    assert "fp16" in err and "Traceback" not in err
