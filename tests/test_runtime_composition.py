"""The runtime side of composable prompts (A1111's AND), prompt editing and alternation, and seed resize.

Tables come from the compiler's own lowering (`make_table`) with the `*_pieces` columns replaced by the
table format's composite objects, written here by hand: the runtime reads them as data. The sampler's
arithmetic is checked with fake eps functions that record what they were sent; the renders use the tiny
random models.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_models import make_table
from torch import Tensor

from dfm.runtime import samplers
from dfm.runtime.errors import RenderError
from dfm.runtime.noise import centred, initial_noise, slerp
from dfm.runtime.prompts import MAX_CACHED, PromptEmbeddings, read_prompt
from dfm.runtime.render import render
from dfm.runtime.samplers import StepCond, cfg_eps

CPU = torch.device("cpu")


def pieces(text: str, weight: float = 1.0) -> list:
    return [[text, weight]]


def composite(*parts: tuple[float, list[tuple[int, str]]]) -> str:
    """The table's composite form: (weight, [(END, text), ...]) per part."""
    return json.dumps({"parts": [{"weight": w, "schedule": [[end, pieces(t)] for end, t in sched]}
                                 for w, sched in parts]}, separators=(",", ":"), ensure_ascii=False)


def plain(text: str) -> str:
    return json.dumps(pieces(text), separators=(",", ":"), ensure_ascii=False)


# ---- cfg_eps: the guidance arithmetic and the batching ----------------------------------------------------


class Recorder:
    """A fake eps function: each item's prediction is its latents plus the mean of its embedding, so every
    embedding gives a known, distinct value; it records the batch size and embeddings of every call."""

    def __init__(self) -> None:
        self.calls: list[Tensor] = []

    def __call__(self, latents, t, emb):
        self.calls.append(emb)
        return latents + emb.mean(dim=(1, 2)).view(-1, 1, 1, 1)

    @property
    def batches(self) -> list[int]:
        return [int(e.shape[0]) for e in self.calls]


def emb(value: float, length: int = 77) -> Tensor:
    return torch.full((1, length, 8), float(value))


X = torch.zeros(1, 4, 2, 2)
T = torch.tensor(10)


def test_two_parts_and_the_uncond_go_to_the_unet_in_one_batch_of_three():
    rec = Recorder()
    step = StepCond(((1.0, emb(2.0)), (0.5, emb(6.0))), emb(1.0))
    out = cfg_eps(rec, X, T, step, 7.0)
    assert rec.batches == [3]
    assert [float(v) for v in rec.calls[0].mean(dim=(1, 2))] == [1.0, 2.0, 6.0]  # unconditional first
    # A1111's composable guidance: eps_u + cfg * sum_i w_i (eps_i - eps_u)
    torch.testing.assert_close(out, torch.full_like(X, 1.0 + 7.0 * (1.0 * (2.0 - 1.0) + 0.5 * (6.0 - 1.0))))


def test_one_part_of_weight_one_is_todays_arithmetic_exactly():
    rec = Recorder()
    cond, uncond = torch.randn(1, 77, 8), torch.randn(1, 77, 8)
    x = torch.randn(1, 4, 2, 2)
    out = cfg_eps(rec, x, T, StepCond(((1.0, cond),), uncond), 7.5)
    eps_u, eps_c = rec(torch.cat([x, x]), T, torch.cat([uncond, cond])).chunk(2)
    assert torch.equal(out, eps_u + 7.5 * (eps_c - eps_u)) and rec.batches[0] == 2
    alone = Recorder()
    assert torch.equal(cfg_eps(alone, x, T, StepCond(((1.0, cond),), None), 1.0), alone(x, T, cond))
    assert alone.batches == [1, 1]  # the unguided step is one conditional pass


def test_weights_scale_each_parts_guidance():
    rec = Recorder()
    for weights in ((0.0, 1.0), (0.25, 0.75), (-0.5, 2.0)):
        step = StepCond(((weights[0], emb(3.0)), (weights[1], emb(5.0))), emb(0.0))
        want = 0.0 + 4.0 * (weights[0] * 3.0 + weights[1] * 5.0)
        torch.testing.assert_close(cfg_eps(rec, X, T, step, 4.0), torch.full_like(X, want))


def test_embeddings_of_different_lengths_are_separate_unet_calls():
    rec = Recorder()
    step = StepCond(((1.0, emb(2.0, 154)), (1.0, emb(3.0))), emb(1.0))
    out = cfg_eps(rec, X, T, step, 2.0)
    assert rec.batches == [2, 1]  # uncond + the one-chunk part together, the two-chunk part alone
    assert [tuple(e.shape) for e in rec.calls] == [(2, 77, 8), (1, 154, 8)]
    torch.testing.assert_close(out, torch.full_like(X, 1.0 + 2.0 * ((2.0 - 1.0) + (3.0 - 1.0))))


def test_an_unguided_blend_of_parts_is_the_weighted_sum_of_predictions():
    rec = Recorder()
    out = cfg_eps(rec, X, T, StepCond(((0.25, emb(4.0)), (0.75, emb(8.0))), None), 1.0)
    assert rec.batches == [2]
    torch.testing.assert_close(out, torch.full_like(X, 0.25 * 4.0 + 0.75 * 8.0))


def test_denoise_asks_the_conditioning_of_each_step_in_img2img_too():
    rec, asked = Recorder(), []
    a, b = emb(1.0), emb(2.0)

    def conditioning(s):
        asked.append(s)
        return StepCond(((1.0, a if s < 2 else b),), None)

    sched = samplers.make_scheduler("euler", {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear",
                                              "beta_start": 0.00085, "beta_end": 0.012})
    samplers.denoise(rec, sched, conditioning=conditioning, cfg_scale=1.0, steps=8, effective_steps=4,
                     generator=torch.Generator().manual_seed(0), takes_generator=True,
                     init_latents=torch.zeros(1, 4, 2, 2))
    assert asked == [0, 1, 2, 3]  # the first step the frame runs is step 0
    assert [c is a for c in rec.calls] == [True, True, False, False]


# ---- the table's pieces values ------------------------------------------------------------------------------


def test_both_forms_of_a_pieces_value_are_read():
    simple = read_prompt(plain("a cat"), 4)
    assert not simple.composite and not simple.guides and simple.texts == [plain("a cat")]
    value = composite((1.0, [(2, "a cat"), (4, "a dog")]), (0.5, [(4, "snow")]))
    c = read_prompt(value, 4)
    assert c.composite and c.guides and [p.weight for p in c.parts] == [1.0, 0.5]
    assert [c.parts[0].at(s) for s in range(6)] == [plain("a cat")] * 3 + [plain("a dog")] * 3
    assert not read_prompt(composite((1.0, [(4, "a cat")])), 4).guides  # one part of weight 1


@pytest.mark.parametrize("value, words", [
    ('{"parts":[]}', "0 parts"),
    ('{"parts":[{"weight":1}]}', "schedule"),
    ('{"parts":[{"weight":"x","schedule":[[4,[["a",1.0]]]]}]}', "not a number"),
    ('{"parts":[{"weight":1,"schedule":[[2,[["a",1.0]]],[2,[["b",1.0]]]]}]}', "strictly ascending"),
    ('{"parts":[{"weight":1,"schedule":[[3,[["a",1.0]]]]}]}', "ends at step 3"),
    ('{"parts":[{"weight":1,"schedule":[[4,[["a"]]]]}]}', "malformed"),
    ('{"parts": 1', "malformed"),
])
def test_a_malformed_composite_is_a_render_error_saying_recompile(value, words):
    with pytest.raises(RenderError, match=words) as e:
        read_prompt(value, 4)
    assert "recompile" in e.value.help


def test_too_many_parts_is_a_render_error_before_anything_is_read():
    many = composite(*[(1.0, [(4, f"part {k}")]) for k in range(33)])
    with pytest.raises(RenderError, match="33 AND parts; the runtime renders at most 32") as e:
        read_prompt(many, 4)
    assert "at most 32 sub-prompts" in e.value.help
    assert len(read_prompt(composite(*[(1.0, [(4, "a")])] * 32), 4).parts) == 32


# ---- per-step conditioning of a row -------------------------------------------------------------------------


class FakeEncoder:
    """pieces -> a distinct constant embedding per text (its number of encodes counted); 'long' is 2 chunks."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.values: dict[str, float] = {}

    def __call__(self, value: str, clip_skip: int) -> Tensor:
        self.calls.append(value)
        v = self.values.setdefault(value, float(len(self.values) + 1))
        return emb(v, 154 if "long" in value else 77)


def row_of(**kw) -> dict:
    row = make_table(1, mode="none").row(0)
    row.update(negative_prompt="blurry", negative_prompt_pieces=plain("blurry"))
    row.update(kw)
    return row


def value(enc: FakeEncoder, text: str) -> float:
    return enc.values[plain(text)]


def test_prompt_editing_switches_the_embedding_at_the_schedules_step():
    enc = FakeEncoder()
    cond = PromptEmbeddings(enc).conditioning(row_of(prompt_pieces=composite((1.0, [(1, "cat"), (4, "dog")]))), 7.0)
    got = [float(cond(s).parts[0][1].mean()) for s in range(6)]
    assert got == [value(enc, "cat")] * 2 + [value(enc, "dog")] * 4  # END 1: steps 0 and 1; past 4: the last
    assert cond.evals_per_step == 2 and float(cond(0).uncond.mean()) == value(enc, "blurry")


def test_alternation_alternates_per_step_and_encodes_each_text_once():
    enc = FakeEncoder()
    sched = [(0, "cow"), (1, "horse"), (2, "cow"), (3, "horse"), (4, "cow")]
    cond = PromptEmbeddings(enc).conditioning(row_of(prompt_pieces=composite((1.0, sched))), 7.0)
    assert [float(cond(s).parts[0][1].mean()) for s in range(5)] == [value(enc, t) for _, t in sched]
    assert sorted(enc.calls) == sorted([plain("cow"), plain("horse"), plain("blurry")])  # 2 texts, not 5 steps


def test_a_text_new_on_every_frame_keeps_a_bounded_cache_of_the_most_recent():
    enc = FakeEncoder()
    e = PromptEmbeddings(enc)
    for i in range(MAX_CACHED + 10):  # a backtick expression in the prompt: another text on every frame
        e(plain(f"cat {i}"))
        e(plain("blurry"))  # the negative, the same on every frame: used on every frame, never evicted
    assert len(e._cache) == MAX_CACHED
    assert enc.calls.count(plain("blurry")) == 1
    e(plain("cat 0"))  # evicted long ago: encoded again, the same embedding
    assert enc.calls.count(plain("cat 0")) == 2 and len(e._cache) == MAX_CACHED
    e(plain(f"cat {MAX_CACHED + 9}"))  # recent: still cached
    assert enc.calls.count(plain(f"cat {MAX_CACHED + 9}")) == 1


def test_long_prompts_new_on_every_frame_are_named_a_few_times_then_counted(tmp_path):
    from types import SimpleNamespace

    from tiny_models import write_tokenizer
    from transformers import CLIPTokenizer

    from dfm.runtime.prompts import MAX_LONG_NOTED, prompt_warnings

    n = MAX_LONG_NOTED + 7
    texts = ["cat " * 80 + f"dog {i}" for i in range(n)]  # a backtick expression: another long text per frame
    columns = {"clip_skip": np.ones(n, dtype=np.int64), "steps": np.full(n, 4), "prompt": np.array(texts),
               "prompt_pieces": np.array([json.dumps([[t, 1.0]]) for t in texts])}
    for text_col, pieces_col in (("negative_prompt", "negative_prompt_pieces"), ("prompt_from", "prompt_from_pieces"),
                                 ("negative_prompt_from", "negative_prompt_from_pieces")):
        columns.update({text_col: np.array([""] * n), pieces_col: np.array([plain("")] * n)})
    table = type("Table", (), {"settings": SimpleNamespace(sampler="euler"), "__getitem__": lambda _, k: columns[k]})()
    tok = CLIPTokenizer.from_pretrained(str(write_tokenizer(tmp_path / "tok")))
    sd = SimpleNamespace(tokenizer=tok, family="sd15",
                         text_encoder_config=SimpleNamespace(num_hidden_layers=2, hidden_size=8))
    warnings = prompt_warnings(table, sd)
    assert len(warnings) == MAX_LONG_NOTED + 1
    assert all("2 chunks of 75 tokens" in w for w in warnings[:-1])
    assert warnings[-1] == "… and 7 more prompts longer than one chunk of 75 tokens"


def test_the_guidance_rule():
    enc = FakeEncoder()
    e = PromptEmbeddings(enc)
    one = composite((1.0, [(4, "cat")]))
    two = composite((1.0, [(4, "cat")]), (0.5, [(4, "dog")]))
    heavy = composite((1.5, [(4, "cat")]))
    assert e.conditioning(row_of(prompt_pieces=one), 1.0)(0).uncond is None  # cfg 1, one part of weight 1
    assert e.conditioning(row_of(prompt_pieces=two), 1.0)(0).uncond is not None  # AND guides at any scale
    assert e.conditioning(row_of(prompt_pieces=heavy), 0.5)(0).uncond is not None
    assert e.conditioning(row_of(prompt_pieces=one), 7.0).evals_per_step == 2
    assert e.conditioning(row_of(prompt_pieces=two), 7.0).evals_per_step == 3
    # a guidance-embedded model: no unconditional pass, the parts become a blend of predictions
    embedded = e.conditioning(row_of(prompt_pieces=two), 7.0, guidance_embedded=True)
    assert embedded(0).uncond is None and [w for w, _ in embedded(0).parts] == pytest.approx([2 / 3, 1 / 3])


def test_a_crossfade_with_a_composite_side_blends_the_parts_predictions():
    enc = FakeEncoder()
    row = row_of(prompt_pieces=composite((1.0, [(4, "cat")]), (0.5, [(4, "snow")])), prompt_from="a dog",
                 prompt_from_pieces=plain("dog"), prompt_blend=0.25)
    cond = PromptEmbeddings(enc).conditioning(row, 1.0)
    step = cond(0)
    assert [w for w, _ in step.parts] == pytest.approx([0.75, 0.25, 0.125])  # from × (1 - b), then prompt × b
    assert [float(e.mean()) for _, e in step.parts] == [value(enc, t) for t in ("dog", "cat", "snow")]
    assert step.uncond is not None and cond.evals_per_step == 4  # the composite side guides at cfg 1
    # two plain sides stay one lerped embedding, as ever
    lerp = PromptEmbeddings(enc).conditioning(row_of(prompt_from="a dog", prompt_from_pieces=plain("dog"),
                                                     prompt_blend=0.25), 7.0)(0)
    assert len(lerp.parts) == 1 and float(lerp.parts[0][1].mean()) == pytest.approx(
        0.75 * value(enc, "dog") + 0.25 * value(enc, "a red cat"))


def test_a_negative_with_prompt_editing_and_its_crossfade():
    enc = FakeEncoder()
    row = row_of(negative_prompt_pieces=composite((1.0, [(1, "red"), (4, "blue")])), negative_prompt_from="x",
                 negative_prompt_from_pieces=plain("green"), negative_blend=0.5)
    cond = PromptEmbeddings(enc).conditioning(row, 7.0)
    red, blue, green = (value(enc, t) for t in ("red", "blue", "green"))
    assert [float(cond(s).uncond.mean()) for s in range(4)] == pytest.approx(
        [(green + red) / 2] * 2 + [(green + blue) / 2] * 2)
    two = row_of(negative_prompt_pieces=composite((1.0, [(4, "red")]), (1.0, [(4, "blue")])))
    with pytest.raises(RenderError, match="negative prompt is one part of weight 1"):
        PromptEmbeddings(enc).conditioning(two, 7.0)


# ---- renders with the tiny models -----------------------------------------------------------------------------


def frames(out, n):
    return [(out / f"frames/{i:05d}.png").read_bytes() for i in range(n)]


@pytest.fixture
def unet_batches(monkeypatch):
    """The batch size of every UNet call of a render (StableDiffusion.eps wrapped, as the sampler sends it)."""
    from dfm.runtime.models import StableDiffusion

    batches: list[int] = []
    real = StableDiffusion.eps

    def eps(self, latents, t, embeddings):
        batches.append(int(latents.shape[0]))
        return real(self, latents, t, embeddings)

    monkeypatch.setattr(StableDiffusion, "eps", eps)
    return batches


def test_and_with_two_parts_renders_with_one_unet_call_of_three_per_step(tiny_models, tmp_path, unet_batches):
    table = make_table(2, mode="none", model=str(tiny_models["folder"]), save_video=False)
    table = table.with_columns(prompt_pieces=composite((1.0, [(4, "a red cat")]), (0.5, [(4, "a blue dog")])))
    report = render(table, tmp_path, device="cpu")
    assert unet_batches == [3] * 8 and report.unet_calls == 8  # 2 images × 4 steps, one batched call each
    assert report.unet_evals == 2 * 4 * 3


def test_a_composite_of_one_weight_one_part_is_the_plain_prompt_byte_for_byte(tiny_models, tmp_path):
    table = make_table(3, model=str(tiny_models["folder"]), save_video=False, cadence=2)
    render(table, tmp_path / "plain", device="cpu")
    same = table.with_columns(prompt_pieces=composite((1.0, [(4, "a red cat")])))
    report = render(same, tmp_path / "composite", device="cpu")
    assert frames(tmp_path / "composite", 3) == frames(tmp_path / "plain", 3)
    assert report.unet_evals == 2 * (4 + 2)  # frame 0 txt2img 4 steps, frame 2 img2img 2, CFG: 2 items each


def test_the_renders_eval_count_is_the_compiled_tables_unet_evals(tiny_models, tmp_path, unet_batches):
    """End to end: the compiler's composite pieces and its `unet_evals` column against what the render sends."""
    from dfm.api import compile_text

    table = compile_text(f'dfm 1\nmode 2d\nsize 64x64\nframes 5\nsteps 4\nstrength 0.5\ncadence 2\nsampler euler\n'
                         f'model "{tiny_models["folder"]}"\nsave_video off\nprompt_crossfade 2\n'
                         'prompt 0 "a [red:blue:2] cat AND a dog :0.5"\nprompt 2 "a cat"\nnegative "[ugly|blurry]"\n')
    assert table["prompt_pieces"][0].startswith('{"parts"')  # the compiler wrote the composite form
    report = render(table, tmp_path, device="cpu")
    assert report.unet_evals == int(np.sum(table["unet_evals"])) == sum(unet_batches)
    assert report.unet_calls == len(unet_batches)


_CAT = __import__("dfm.compiler.catalogue", fromlist=["SAMPLERS"])


@pytest.mark.parametrize("sampler", [s for s in _CAT.SAMPLERS if s not in _CAT.FLOW_SAMPLERS])  # SD's samplers
def test_every_samplers_eval_count_is_the_compiled_tables_unet_evals(sampler, tiny_models, tmp_path, unet_batches):
    """Every sampler, txt2img then img2img (second-order: 2n - 1 evaluations; PLMS: its warm-up call), with
    a prompt schedule written over the sampler's own step count (A1111's × 2 for second-order samplers)."""
    from dfm.api import compile_text

    table = compile_text(f'dfm 1\nmode 2d\nsize 64x64\nframes 2\nsteps 3\nstrength 0.5\nsampler {sampler}\n'
                         f'model "{tiny_models["folder"]}"\nsave_video off\n'
                         'prompt 0 "a [red:blue:0.5] cat AND a dog :0.5"\n')
    report = render(table, tmp_path, device="cpu")
    assert report.unet_evals == int(np.sum(table["unet_evals"])) == sum(unet_batches) > 0


def test_a_bad_composite_on_a_later_frame_fails_before_the_first_frame(tiny_models, tmp_path):
    table = make_table(2, mode="none", model=str(tiny_models["folder"]), save_video=False)
    ends_early = composite((1.0, [(3, "a red cat")]))  # the row has 4 steps
    two_negatives = composite((1.0, [(4, "blurry")]), (1.0, [(4, "dark")]))
    for bad in (dict(prompt_pieces=[plain("a red cat"), ends_early]),
                dict(negative_prompt_pieces=[plain(""), two_negatives])):
        with pytest.raises(RenderError, match="ends at step 3|a negative prompt is one part"):
            render(table.with_columns(**bad), tmp_path / "out", device="cpu")
        assert not list(tmp_path.glob("out/frames/*.png"))


def test_prompt_editing_and_weights_change_the_render(tiny_models, tmp_path):
    base = make_table(1, mode="none", model=str(tiny_models["folder"]), save_video=False)
    render(base, tmp_path / "plain", device="cpu")
    edited = base.with_columns(prompt_pieces=composite((1.0, [(1, "a red cat"), (4, "a blue dog")])))
    report = render(edited, tmp_path / "edited", device="cpu")
    assert frames(tmp_path / "edited", 1) != frames(tmp_path / "plain", 1)
    assert report.text_encoder_calls == 3  # the two texts and the negative, each once
    heavy = base.with_columns(prompt_pieces=composite((1.3, [(4, "a red cat")])))
    render(heavy, tmp_path / "heavy", device="cpu")
    assert frames(tmp_path / "heavy", 1) != frames(tmp_path / "plain", 1)


def test_sdxl_renders_an_and_prompt_with_each_parts_pooled_row(tmp_path_factory, tmp_path, unet_batches):
    from sdxl_models import save_sdxl

    xl = save_sdxl(tmp_path_factory.mktemp("sdxl"))
    table = make_table(1, mode="none", model=str(xl["folder"]), save_video=False)
    table = table.with_columns(prompt_pieces=composite((1.0, [(4, "a red cat")]), (0.7, [(4, "a blue dog")])))
    report = render(table, tmp_path, device="cpu")
    assert unet_batches == [3] * 4 and report.unet_evals == 4 * 3
    assert len(frames(tmp_path, 1)) == 1


# ---- seed resize ------------------------------------------------------------------------------------------------


def test_seed_resize_from_the_frames_own_size_is_no_resize():
    shape = (1, 4, 8, 6)
    for kw in ({}, {"subseed": 3, "subseed_strength": 0.4}):
        off = initial_noise(shape, samplers.frame_generator(5, CPU), **kw)
        same = initial_noise(shape, samplers.frame_generator(5, CPU), resize_from=(8, 6), **kw)
        assert torch.equal(off, same)


@pytest.mark.parametrize("target, source", [((8, 6), (4, 4)), ((4, 4), (8, 6)), ((6, 5), (9, 2))])
def test_seed_resize_centres_the_other_sizes_noise_as_a1111(target, source):
    shape = (1, 4, *target)
    gen = samplers.frame_generator(5, CPU)
    out = initial_noise(shape, gen, resize_from=source)
    drawn = torch.randn((1, 4, *source), generator=torch.Generator().manual_seed(5))  # the seed at the other size
    own = torch.randn(shape, generator=torch.Generator().manual_seed(5))  # the seed at the frame's size
    # A1111's offsets: half the difference, floored; the region shared by both sizes comes from `drawn`
    (th, tw), (sh, sw) = target, source
    dy, dx = (th - sh) // 2, (tw - sw) // 2
    h, w = (sh if dy >= 0 else sh + 2 * dy), (sw if dx >= 0 else sw + 2 * dx)
    ty, tx, fy, fx = max(dy, 0), max(dx, 0), max(-dy, 0), max(-dx, 0)
    assert torch.equal(out[..., ty:ty + h, tx:tx + w], drawn[..., fy:fy + h, fx:fx + w])
    mask = torch.ones(target, dtype=torch.bool)
    mask[ty:ty + h, tx:tx + w] = False
    assert torch.equal(out[..., mask], own[..., mask])  # elsewhere the frame-sized noise of the seed
    # the frame's generator drew one frame-sized noise, as without a resize: later sampler draws are unchanged
    assert torch.equal(torch.randn(3, generator=gen), torch.randn(3, generator=_after_one_draw(shape)))


def _after_one_draw(shape) -> torch.Generator:
    g = samplers.frame_generator(5, CPU)
    torch.randn(shape, generator=g)
    return g


def test_seed_resize_slerps_the_subseed_at_the_other_size():
    shape, source = (1, 4, 8, 8), (4, 4)
    out = initial_noise(shape, samplers.frame_generator(5, CPU), subseed=9, subseed_strength=0.3, resize_from=source)
    a = torch.randn((1, 4, *source), generator=torch.Generator().manual_seed(5))
    b = torch.randn((1, 4, *source), generator=torch.Generator().manual_seed(9))
    own = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    assert torch.equal(out, centred(slerp(0.3, a[0], b[0])[None], own))


def test_a_render_with_seed_resize(tiny_models, tmp_path):
    table = make_table(1, mode="none", model=str(tiny_models["folder"]), save_video=False)
    render(table, tmp_path / "off", device="cpu")
    render(table.with_settings(seed_resize_from=(64, 64)), tmp_path / "same", device="cpu")
    render(table.with_settings(seed_resize_from=(32, 96)), tmp_path / "other", device="cpu")
    assert frames(tmp_path / "same", 1) == frames(tmp_path / "off", 1)
    assert frames(tmp_path / "other", 1) != frames(tmp_path / "off", 1)
