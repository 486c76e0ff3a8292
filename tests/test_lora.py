"""LoRAs and textual-inversion embeddings: the compiler's statements and tags (compiler/networks.py), and the
runtime's loading, per-frame weights, fusing and embeddings (runtime/networks.py), with tiny random LoRAs
made here with peft on the tiny model's own layers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dfm.api import check_text, compile_text
from dfm.compiler import networks as compiler_networks
from dfm.contract import changes
from dfm.runtime import RenderError, networks
from dfm.runtime.device import pick_device
from dfm.runtime.models import StableDiffusion, resolve_source
from dfm.runtime.prompts import PromptEmbeddings, PromptEncoder
from dfm.runtime.render import render

RANK = 2


def _lora_state(folder: Path, seed: int) -> dict[str, torch.Tensor]:
    """A diffusers-format LoRA (peft keys, `unet.`/`text_encoder.` prefixes) for the tiny model: rank 2 on
    the attention projections of the UNet and the text encoder, every matrix random (B non-zero)."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(str(folder), subfolder="unet")
    te = CLIPTextModel.from_pretrained(str(folder), subfolder="text_encoder")
    torch.manual_seed(seed)
    config = dict(r=RANK, lora_alpha=RANK, init_lora_weights=False)
    unet = inject_adapter_in_model(LoraConfig(target_modules=["to_q", "to_k", "to_v", "to_out.0"], **config), unet)
    te = inject_adapter_in_model(LoraConfig(target_modules=["q_proj", "k_proj", "v_proj", "out_proj"], **config), te)
    state = {f"unet.{k}": v.contiguous() for k, v in get_peft_model_state_dict(unet).items()}
    state.update({f"text_encoder.{k}": v.contiguous() for k, v in get_peft_model_state_dict(te).items()})
    return state


def _kohya(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same LoRA with kohya/A1111 key names (`lora_unet_…`, `lora_te_text_model_…`, lora_down/up, alpha)."""
    out = {}
    for key, v in state.items():
        part, rest = key.split(".", 1)
        module, kind = rest.rsplit(".lora_", 1)
        if part == "text_encoder" and not module.startswith("text_model."):
            module = "text_model." + module
        name = ("lora_unet_" if part == "unet" else "lora_te_") + module.replace(".", "_")
        out[f"{name}.lora_{'down' if kind.startswith('A') else 'up'}.weight"] = v
        out[f"{name}.alpha"] = torch.tensor(float(RANK))
    return out


@pytest.fixture(scope="module")
def files(tiny_models, tmp_path_factory):
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("networks")
    state = _lora_state(tiny_models["folder"], seed=5)
    save_file(state, str(root / "film.safetensors"))
    (root / "loras" / "styles").mkdir(parents=True)
    save_file(state, str(root / "loras" / "styles" / "grain.safetensors"))  # found by its stem, in a subfolder
    save_file(_kohya(state), str(root / "kohya.safetensors"))
    xl = {k.replace("text_encoder.", "text_encoder_2."): v.clone()  # an SDXL LoRA adapts a second text encoder
          for k, v in state.items() if k.startswith("text_encoder")}
    save_file({**state, **xl}, str(root / "sdxl.safetensors"))
    bad = dict(state)
    first = next(k for k in bad if k.endswith("to_q.lora_A.weight"))
    bad[first] = torch.randn(RANK, 5)
    save_file(bad, str(root / "shapes.safetensors"))
    torch.manual_seed(9)
    vectors = torch.randn(2, 8) * 0.5
    (root / "emb").mkdir()
    save_file({"emb_params": vectors}, str(root / "emb" / "mystyle.safetensors"))
    torch.save({"string_to_param": {"*": vectors}, "name": "mystyle"}, str(root / "pickled.pt"))
    return root


def scene(tiny_models, body: str, frames: int = 2) -> str:
    return (f'dfm 1\nmode 2d\nframes {frames}\nsize 64x64\nsteps 4\nstrength 0.5\nsampler euler\nseed 7\n'
            f'color_coherence none\nmodel "{tiny_models["folder"]}"\n{body}\n')


def rendered(tiny_models, files, out: Path, body: str, frames: int = 2, prompt: str = "a red cat") -> list[bytes]:
    table = compile_text(scene(tiny_models, f'{body}\nprompt 0 "{prompt}"', frames), str(files / "s.dfm"))
    render(table, out, device="cpu")
    return [(out / f"frames/{i:05d}.png").read_bytes() for i in range(frames)]


@pytest.fixture(scope="module")
def plain(tiny_models, files, tmp_path_factory):
    return rendered(tiny_models, files, tmp_path_factory.mktemp("plain"), "")


@pytest.fixture
def sd(tiny_models):
    model = StableDiffusion(resolve_source(str(tiny_models["folder"])), pick_device("cpu"))
    model.load()
    return model


def table_of(tiny_models, files, body: str, frames: int = 2, prompt: str = "a red cat"):
    return compile_text(scene(tiny_models, f'{body}\nprompt 0 "{prompt}"', frames), str(files / "s.dfm"))


def lora_layers(module) -> int:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return sum(isinstance(m, BaseTunerLayer) for m in module.modules())


# ---- renders ---------------------------------------------------------------------------------------------------


def test_weight_0_renders_the_bytes_of_no_lora(tiny_models, files, plain, tmp_path):
    assert rendered(tiny_models, files, tmp_path / "zero", 'lora "film.safetensors" 0') == plain


def test_weight_0_8_changes_the_frames(tiny_models, files, plain, tmp_path):
    got = rendered(tiny_models, files, tmp_path / "w", 'lora "film.safetensors" 0.8')
    assert got[0] != plain[0] and got[1] != plain[1]


def test_a_schedule_sets_the_weights_per_frame_and_the_render_records_them(tiny_models, files, plain, tmp_path):
    out = tmp_path / "ramp"
    got = rendered(tiny_models, files, out, 'lora "film.safetensors" 0:(0), 2:(1)', frames=3)
    assert got[0] == plain[0]  # weight 0 on frame 0: the adapters are off, exactly no LoRA
    assert got[1] != plain[1]
    lines = (out / "table.csv").read_text().splitlines()
    col = lines[0].split(",").index("lora_weights")
    import csv

    rows = list(csv.reader(lines))[1:]
    assert [json.loads(r[col]) for r in rows] == [[[0.0, 0.0]], [[0.5, 0.5]], [[1.0, 1.0]]]


def test_a_tag_from_lora_dir_is_the_same_lora_as_a_statement(tiny_models, files, tmp_path):
    t = table_of(tiny_models, files, 'lora_dir "loras"', prompt="a red <lora:grain:0.5> cat")
    assert t.settings.lora == (str(files / "loras" / "styles" / "grain.safetensors"),)
    assert list(t["lora_weights"]) == ['[[0.5,0.5]]'] * 2
    tagged = rendered(tiny_models, files, tmp_path / "tag", 'lora_dir "loras"', prompt="a red <lora:grain:0.5> cat")
    stated = rendered(tiny_models, files, tmp_path / "st", 'lora "loras/styles/grain.safetensors" 0.5',
                      prompt="a red  cat")  # the tag is left out of the text CLIP sees
    assert tagged == stated


def test_an_edited_weight_rerenders_from_its_frame_to_the_bytes_of_a_full_render(tiny_models, files, tmp_path):
    import shutil

    first = table_of(tiny_models, files, 'lora "film.safetensors" 0:(0), 1:(0.3), 3:(0.6)', frames=4)
    edited = table_of(tiny_models, files, 'lora "film.safetensors" 0:(0), 1:(0.3), 2:(0.9)', frames=4)
    assert list(first["lora_weights"][:2]) == list(edited["lora_weights"][:2])  # frames 0, 1 unchanged
    full = tmp_path / "full"
    render(edited, full, device="cpu")
    inc = tmp_path / "inc"
    render(first, inc, device="cpu")
    report = render(edited, inc, device="cpu")
    assert report.kept_frames == 2 and "LoRA weights" in report.kept
    for i in range(4):
        name = f"frames/{i:05d}.png"
        assert (inc / name).read_bytes() == (full / name).read_bytes(), name
    shutil.rmtree(inc)


# ---- the runtime, piece by piece --------------------------------------------------------------------------------


def eps(sd, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    latents = torch.randn(1, 4, 8, 8, generator=g)
    text = torch.randn(1, 77, 8, generator=g)
    with torch.no_grad():
        return sd.eps(latents, torch.tensor(500), text)


def test_constant_weights_fuse_and_match_the_unfused_adapters(tiny_models, files, sd):
    base = eps(sd)
    fused = networks.prepare(table_of(tiny_models, files, 'lora "film.safetensors" 0.8'), sd, False)
    assert fused.fused
    a = eps(sd)
    varying = table_of(tiny_models, files, 'lora "film.safetensors" 0:(0.8), 1:(0.5)')
    inst = networks.prepare(varying, sd, False)  # replaces the fused one
    assert not inst.fused
    frame = networks.for_renderer(varying, sd, PromptEmbeddings(PromptEncoder(sd)), lambda: None)
    frame.apply(varying.row(0), 0)
    b = eps(sd)
    assert not torch.equal(a, base)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    frame.apply(varying.row(1), 1)
    assert not torch.allclose(eps(sd), b)


def test_the_kohya_form_loads_as_the_same_lora(tiny_models, files, sd):
    networks.prepare(table_of(tiny_models, files, 'lora "film.safetensors" 0.8'), sd, False)
    ours = eps(sd)
    inst = networks.prepare(table_of(tiny_models, files, 'lora "kohya.safetensors" 0.8'), sd, False)
    assert inst.loras[0].unet and inst.loras[0].encoders == ("text_encoder",)
    torch.testing.assert_close(eps(sd), ours, rtol=1e-4, atol=1e-5)


def test_text_encoder_weights_get_their_own_prompt_cache(tiny_models, files, sd):
    table = table_of(tiny_models, files, 'lora "film.safetensors" 0:(0), 1:(1)')
    networks.prepare(table, sd, False)
    first = PromptEmbeddings(PromptEncoder(sd))
    frame = networks.for_renderer(table, sd, first, lambda: PromptEmbeddings(PromptEncoder(sd)))
    pieces = str(table["prompt_pieces"][0])
    off = frame.apply(table.row(0), 0)
    assert off is first
    z0 = off(pieces).clone()
    on = frame.apply(table.row(1), 1)
    assert on is not first
    assert not torch.equal(on(pieces), z0)
    assert torch.equal(frame.apply(table.row(0), 0)(pieces), z0)  # back at 0: the cache made without the LoRA


def test_text_encoder_weights_animated_keep_a_bounded_number_of_prompt_caches(tiny_models, files, sd):
    table = table_of(tiny_models, files, 'lora "film.safetensors" 0:(0), 1:(1)')
    networks.prepare(table, sd, False)
    new_cache = lambda: PromptEmbeddings(PromptEncoder(sd))  # noqa: E731
    frame = networks.for_renderer(table, sd, new_cache(), new_cache)
    pieces = str(table["prompt_pieces"][0])
    first = frame.apply({"lora_weights": "[[0, 0.5]]"}, 0)
    z = first(pieces).clone()
    for i in range(1, 3 * networks.MAX_PROMPT_CACHES):  # a weight ramp: new weights on every frame
        assert frame.apply({"lora_weights": json.dumps([[0, 0.5 + i / 100]])}, i) is not first
        assert len(frame.caches) <= networks.MAX_PROMPT_CACHES
    again = frame.apply({"lora_weights": "[[0, 0.5]]"}, 99)  # evicted long ago: encoded again, the same
    assert again is not first and torch.equal(again(pieces), z)
    assert frame.apply({"lora_weights": "[[0, 0.5]]"}, 100) is again  # the most recent one is kept


def test_another_render_takes_the_old_networks_out(tiny_models, files, sd):
    base = eps(sd)
    networks.prepare(table_of(tiny_models, files, 'lora "film.safetensors" 0.8'), sd, False)
    assert lora_layers(sd.unet) and lora_layers(sd.text_encoder)
    assert networks.prepare(table_of(tiny_models, files, ""), sd, False) is None
    assert lora_layers(sd.unet) == 0 and lora_layers(sd.text_encoder) == 0
    assert torch.equal(eps(sd), base)


@pytest.mark.parametrize("name, message", [
    ("sdxl.safetensors", "sdxl.safetensors is an SDXL LoRA"),
    ("shapes.safetensors", "shapes.safetensors: layer .*to_q.* has shapes"),
])
def test_a_lora_for_another_model_is_a_render_error_before_any_frame(tiny_models, files, sd, name, message):
    with pytest.raises(RenderError, match=message):
        networks.prepare(table_of(tiny_models, files, f'lora "{name}" 1'), sd, False)
    assert lora_layers(sd.unet) == 0  # nothing half-loaded stays behind


def test_an_embedding_changes_only_the_prompts_that_use_its_token(tiny_models, files, sd):
    enc = PromptEncoder(sd)
    pieces = {t: compile_text(scene(tiny_models, f'prompt 0 "{t}"'))["prompt_pieces"][0]
              for t in ("a red cat", "a MyStyle cat", "a mystyle cat")}
    before = {t: enc(p) for t, p in pieces.items()}
    table = table_of(tiny_models, files, 'embeddings_dir "emb"', prompt="a mystyle cat")
    assert table.settings.embedding == (str(files / "emb" / "mystyle.safetensors"),)
    networks.prepare(table, sd, False)
    after = {t: enc(p) for t, p in pieces.items()}
    assert torch.equal(after["a red cat"], before["a red cat"])
    assert not torch.equal(after["a mystyle cat"], before["a mystyle cat"])
    assert torch.equal(after["a MyStyle cat"], after["a mystyle cat"])  # CLIP lowercases: so does the match
    tokens = enc.chunks(str(pieces["a mystyle cat"]))[0].tokens
    rows = sd.text_encoder.get_input_embeddings().weight.shape[0]
    assert [t for t in tokens if t >= rows - 2] == [rows - 2, rows - 1]  # two vectors, two positions
    networks.prepare(table_of(tiny_models, files, ""), sd, False)  # the next render has none: all undone
    assert sd.text_encoder.get_input_embeddings().weight.shape[0] == rows - 2
    assert torch.equal(enc(pieces["a mystyle cat"]), before["a mystyle cat"])


def test_a_pickled_embedding_needs_allow_pickle(tiny_models, files, sd):
    table = table_of(tiny_models, files, 'embedding "pickled.pt"', prompt="a pickled cat")
    with pytest.raises(RenderError, match="pickle file(?s:.*)--allow-pickle"):
        networks.prepare(table, sd, False)
    networks.prepare(table, sd, True)
    assert isinstance(sd.tokenizer, networks.EmbeddingTokenizer)


# ---- the compiler ------------------------------------------------------------------------------------------------


def diags(tiny_models, files, body: str):
    return [(d.code, d.is_error, d.message, d.span.col) for d in
            check_text(scene(tiny_models, body), str(files / "s.dfm"))]


def test_a_tag_naming_no_file_is_an_error_at_the_tag_saying_where_it_looked(tiny_models, files):
    line = 'prompt 0 "a cat <lora:nothere:0.5>"'
    ((code, is_error, message, col),) = diags(tiny_models, files, f'lora_dir "loras"\n{line}')
    assert (code, is_error) == ("DFM403", True) and str(files / "loras") in message
    assert col == line.index("<lora") + 1


def test_a_tag_without_lora_dir_is_a_warning_and_loads_nothing(tiny_models, files):
    ((code, is_error, message, _),) = diags(tiny_models, files, 'prompt 0 "a cat <lora:grain>"')
    assert (code, is_error) == ("DFM403", False) and "lora_dir" in message
    assert table_of(tiny_models, files, "", prompt="a cat <lora:grain>").settings.lora is None


@pytest.mark.parametrize("body, code, is_error", [
    ('lora "film.safetensors" 0:(0), 1:(5)', "DFM401", True),  # outside [-4, 4] on frame 1
    ('lora "film.safetensors" 3', "DFM401", False),  # beyond ±2: a warning
    ('lora "missing.safetensors" 1', "DFM403", True),
    ('lora "emb/mystyle.safetensors" 1', "DFM103", True),  # not a LoRA
    ('lora "film.safetensors" 1\nlora "film.safetensors" 0.5', "DFM109", True),
    ('prompt 1 "x <lora:grain:abc>"\nlora_dir "loras"', "DFM103", True),
    ('prompt 1 "x --neg <lora:grain>"\nlora_dir "loras"', "DFM502", False),
])
def test_statement_and_tag_problems(tiny_models, files, body, code, is_error):
    found = [(c, e) for c, e, _, _ in diags(tiny_models, files, body + '\nprompt 0 "a cat"')]
    assert found == [(code, is_error)]


@pytest.mark.parametrize("body, lora, weights", [
    ('lora "owner/film-lora" 0.5', "owner/film-lora", "[[0.5,0.5]]"),  # a hub id: fetched when rendering
    ('lora "film.safetensors"', None, "[[1.0,1.0]]"),  # weight 1 by default
    ('lora_dir "loras"\nprompt 1 "x <lora:grain:te=0.5:unet=2>"', None, "[[2.0,0.5]]"),  # named, A1111's keys
])
def test_lora_sources_and_weights(tiny_models, files, body, lora, weights):
    t = table_of(tiny_models, files, body)
    assert t.settings.lora[0] == (lora or t.settings.lora[0]) and str(t["lora_weights"][-1]) == weights
    assert [d.code for d in check_text(scene(tiny_models, body + '\nprompt 0 "a"'), str(files / "s.dfm"))] == []


def test_tags_fade_with_the_prompt_crossfade_and_add_to_a_statement(tiny_models, files):
    body = ('lora_dir "loras"\nlora "loras/styles/grain.safetensors" 0.25\nprompt_crossfade 1\n'
            'prompt 2 "a dog <lora:grain:1:0.5>"')
    w = [json.loads(x) for x in table_of(tiny_models, files, body, frames=4)["lora_weights"]]
    # [unet, text encoder]: A1111's order in the tag is te first, then unet; frame 2 is halfway into the fade
    assert w == [[[0.25, 0.25]], [[0.25, 0.25]], [[0.5, 0.75]], [[0.75, 1.25]]]


def test_a_weight_change_touches_its_frame_and_a_file_change_every_frame(tiny_models, files):
    a = table_of(tiny_models, files, 'lora "film.safetensors" 0:(0.5), 2:(0.5), 3:(0.7)', frames=4)
    b = table_of(tiny_models, files, 'lora "film.safetensors" 0:(0.5), 2:(0.5), 3:(1)', frames=4)
    assert changes.compare(a, b).first_frame == 3
    fused = table_of(tiny_models, files, 'lora "film.safetensors" 0.5', frames=4)
    assert changes.lora_fused(fused) and not changes.lora_fused(a)
    assert changes.compare(fused, b).first_frame == 0  # fused frames are not the bits of unfused ones
    c = table_of(tiny_models, files, 'lora "kohya.safetensors" 0.5', frames=4)
    d = changes.compare(a, c)
    assert d.every_frame is not None and d.every_frame.name == "lora"
    assert networks.network_files(a) != networks.network_files(c)


def test_check_and_compile_do_not_import_torch(tiny_models, files):
    text = scene(tiny_models, 'lora "film.safetensors" 0:(0), 1:(1)\nlora_dir "loras"\nembeddings_dir "emb"\n'
                 'prompt 0 "a mystyle cat <lora:grain:0.5>"')
    code = ("import sys, json; from dfm.api import check_text, compile_text; "
            f"t = compile_text({text!r}, {str(files / 's.dfm')!r}); check_text({text!r}); "
            "print(json.dumps([list(t['lora_weights']), 'torch' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    weights, torch_loaded = json.loads(out)
    assert weights[1] == "[[1.0,1.0],[0.5,0.5]]" and torch_loaded is False


def test_a_safetensors_header_is_read_without_torch(files):
    header = compiler_networks.safetensors_header(files / "film.safetensors")
    assert all(v["shape"][0] == RANK or v["shape"][1] == RANK for v in header.values())
    assert compiler_networks.embedding_vectors(compiler_networks.safetensors_header(
        files / "emb" / "mystyle.safetensors")) == {"": (2, 8)}
    (files / "junk.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(compiler_networks.NetworkFileError, match="not a .safetensors"):
        compiler_networks.safetensors_header(files / "junk.safetensors")
    assert np.isfinite(compiler_networks.WEIGHT_MAX)


# ---- SDXL: two text encoders -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xl(tmp_path_factory, files):
    """The tiny SDXL model, loaded, and an SDXL LoRA (UNet and both text encoders) and embedding for it."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
    from safetensors.torch import save_file
    from sdxl_models import save_sdxl
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    root = tmp_path_factory.mktemp("xl")
    folder = save_sdxl(root)["folder"]
    torch.manual_seed(11)
    config = dict(r=RANK, lora_alpha=RANK, init_lora_weights=False)
    state = {}
    parts = (("unet", UNet2DConditionModel, ["to_q", "to_k", "to_v", "to_out.0"]),
             ("text_encoder", CLIPTextModel, ["q_proj", "k_proj", "v_proj", "out_proj"]),
             ("text_encoder_2", CLIPTextModelWithProjection, ["q_proj", "k_proj", "v_proj", "out_proj"]))
    for name, cls, targets in parts:
        model = inject_adapter_in_model(LoraConfig(target_modules=targets, **config),
                                        cls.from_pretrained(str(folder), subfolder=name))
        state.update({f"{name}.{k}": v.contiguous() for k, v in get_peft_model_state_dict(model).items()})
    save_file(state, str(files / "xl_lora.safetensors"))
    save_file({"clip_l": torch.randn(1, 8), "clip_g": torch.randn(1, 12)}, str(files / "xlstyle.safetensors"))
    sd = StableDiffusion(resolve_source(str(folder)), pick_device("cpu"))
    sd.load()
    return sd


def xl_eps(sd) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    latents = torch.randn(1, 4, 8, 8, generator=g)
    text = torch.randn(1, 78, 20, generator=g)  # 77 tokens and the pooled row
    with torch.no_grad():
        return sd.eps(latents, torch.tensor(500), text)


def test_an_sdxl_lora_adapts_the_unet_and_both_text_encoders(tiny_models, files, xl):
    base = xl_eps(xl)
    table = table_of(tiny_models, files, 'lora "xl_lora.safetensors" 0:(0), 1:(1)')
    inst = networks.prepare(table, xl, False)
    assert inst.loras[0].encoders == ("text_encoder", "text_encoder_2")
    enc = PromptEncoder(xl)
    pieces = str(table["prompt_pieces"][0])
    plain = enc(pieces)
    frame = networks.for_renderer(table, xl, PromptEmbeddings(enc), lambda: PromptEmbeddings(PromptEncoder(xl)))
    frame.apply(table.row(0), 0)
    assert torch.equal(xl_eps(xl), base)
    on = frame.apply(table.row(1), 1)
    assert not torch.equal(xl_eps(xl), base) and not torch.equal(on(pieces), plain)
    with pytest.raises(RenderError, match="film.safetensors: layer .* has shapes"):  # an SD 1.5 LoRA
        networks.prepare(table_of(tiny_models, files, 'lora "film.safetensors" 1'), xl, False)
    networks.prepare(table_of(tiny_models, files, ""), xl, False)
    assert torch.equal(xl_eps(xl), base)


def test_an_sdxl_embedding_gives_each_encoder_its_vectors(tiny_models, files, xl):
    enc = PromptEncoder(xl)
    pieces = str(compile_text(scene(tiny_models, 'prompt 0 "a xlstyle cat"'))["prompt_pieces"][0])
    before = enc(pieces)
    networks.prepare(table_of(tiny_models, files, 'embedding "xlstyle.safetensors"'), xl, False)
    assert not torch.equal(enc(pieces), before)
    with pytest.raises(RenderError, match="mystyle.safetensors is for SD 1.x/2.x"):
        networks.prepare(table_of(tiny_models, files, 'embedding "emb/mystyle.safetensors"'), xl, False)
    networks.prepare(table_of(tiny_models, files, ""), xl, False)
    assert torch.equal(enc(pieces), before)
