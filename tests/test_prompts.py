"""Prompts at A1111 parity: the attention-weight parser against A1111's documented examples, the syntax
dfm does not implement (warned, never silent), the pieces columns, 75-token chunks with the comma
backtrack and BREAK, the weighted encoding (mean restored; weight 1 is the plain encoding, byte for byte),
CLIP skip, and renders with the tiny model."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import make_table

from dfm.api import check_text, compile_text
from dfm.compiler.prompt_syntax import check, pieces, pieces_json
from dfm.runtime import RenderError
from dfm.runtime import frame as frame_module
from dfm.runtime.device import pick_device
from dfm.runtime.models import StableDiffusion, resolve_source
from dfm.runtime.prompts import CHUNK_TOKENS, PromptEncoder, make_chunks, prompt_warnings, read_pieces
from dfm.runtime.render import render

R, S = 1.1, 1 / 1.1  # A1111's round and square bracket factors

# ---- the parser: A1111's parse_prompt_attention ------------------------------------------------------------

# input -> pieces; the first six are the examples in A1111's own docstring, weights as its float products
A1111_EXAMPLES = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", R), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", R)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", R)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.5730000000000004), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55),
      (", sun, ", 1.1), ("sky", 1.4641000000000006), (".", 1.1)]),
    ("a (b:1.5) c", [("a ", 1.0), ("b", 1.5), (" c", 1.0)]),
    ("((a))", [("a", R * R)]),
    ("[a]", [("a", S)]),
    ("[[a]]", [("a", S * S)]),
    ("\\(a\\)", [("(a)", 1.0)]),
    ("(a:0.5) [b] (c)", [("a", 0.5), (" ", 1.0), ("b", S), (" ", 1.0), ("c", R)]),
    ("(a phrase of words:0.8)", [("a phrase of words", 0.8)]),
    ("((a:1.5) b)", [("a", 1.5 * R), (" b", R)]),
    ("(a: 1.3 )", [("a", 1.3)]),  # spaces around the weight
    ("(a:-1)", [("a", -1.0)]),
    ("(a:1.0) b", [("a b", 1.0)]),  # weight 1 merges back into the plain text
    ("a) b", [("a) b", 1.0)]),  # a ')' closing nothing is text
    ("a] b [c", [("a] b ", 1.0), ("c", S)]),
    (":1.3) a", [(":1.3) a", 1.0)]),  # a weight closing nothing is text too
    ("a\\b", [("ab", 1.0)]),  # a lone backslash is dropped, as in A1111
    ("a\\\\b", [("a\\b", 1.0)]),  # an escaped backslash is one
    ("a: b", [("a: b", 1.0)]),
    ("", [("", 1.0)]),
    ("()", [("", 1.0)]),
    ("a BREAK b", [("a", 1.0), "BREAK", ("b", 1.0)]),
    ("(a BREAK b)", [("a", R), "BREAK", ("b", R)]),  # A1111 would encode the word BREAK here
    ("BREAKFAST", [("BREAKFAST", 1.0)]),
    ("a <lora:film_grain:0.8> cat", [("a  cat", 1.0)]),  # extra-network tags are left out, as A1111 does
]


@pytest.mark.parametrize(("text", "expected"), A1111_EXAMPLES, ids=[t or "<empty>" for t, _ in A1111_EXAMPLES])
def test_weights_as_a1111_parses_them(text, expected):
    assert pieces(text) == expected


def test_pieces_json_is_the_tables_form():
    assert pieces_json("a (red:1.3) cat") == '[["a ",1.0],["red",1.3],[" cat",1.0]]'
    assert pieces_json("a BREAK b") == '[["a",1.0],"BREAK",["b",1.0]]'
    assert pieces_json("a red cat") == '[["a red cat",1.0]]'
    assert read_pieces(pieces_json("a (b:0.5) BREAK")) == [("a ", 1.0), ("b", 0.5), None]
    weird = "((a))\u00e9 [\"q\"]"
    assert [tuple(p) for p in json.loads(pieces_json(weird))] == pieces(weird)  # JSON round trip, floats exact


@pytest.mark.parametrize(("text", "issues"), [
    ("(unclosed", [("DFM501", False, "(")]),
    ("[unclosed", [("DFM501", False, "[")]),
    ("a) b", [("DFM501", False, ")")]),
    ("a] b", [("DFM501", False, "]")]),
    (":1.3) a", [("DFM501", False, ")")]),
    ("(a:1.2.3)", [("DFM501", True, "1.2.3")]),  # A1111 fails on it; one error, not a second for the bracket
    ("\\(fine\\) (ok) [ok] (ok:2) \\\\", []),
    ("C:\\path", [("DFM501", False, "\\")]),  # a lone backslash is dropped
    # implemented (tests/test_prompt_composition.py): no warning
    ("a AND b :0.5", []),
    ("[dog:cat:0.5]", []),
    ("[dog::10]", []),
    ("[a|b|c]", []),
    ("(cat:`1+t/max_f`)", []),
    ("apple:`where(cos(t)>=0, cos(t), 0)`", []),  # the brackets inside backticks are no attention syntax
    ("a <lora:grain:0.8>", []),  # LoRA tags are compiler/networks.py's: loaded, their files checked there
    ("a <hypernet:grain:0.8>", [("DFM502", False, "<hypernet:grain:0.8>")]),
    ("[a:b]", []),  # a plain ÷1.1 group with a colon in it: not prompt editing
    ("\\[a|b\\]", []),  # escaped: literal brackets
])
def test_check_finds_each_problem_at_its_place(text, issues):
    found = check(text)
    assert [(i.code, i.error, text[i.start:i.end]) for i in found] == issues


# ---- diagnostics in a scene -----------------------------------------------------------------------------------

HEAD = 'dfm 1\nframes 10\n'


def diags(body: str):
    return [d for d in check_text(HEAD + body, "s.dfm") if d.code in ("DFM501", "DFM502")]


def test_diagnostics_point_into_the_string():
    (d,) = diags('prompt 0 "a \\"quoted\\" (cat"\n')
    assert d.code == "DFM501" and not d.is_error and d.parameter == "prompt"
    assert (d.span.line, d.span.col, d.span.end_col) == (3, 24, 25)  # the '(' after the escaped quotes
    (d,) = diags('negative "blurry AND grainy"\n')  # A1111 has no AND in negatives: it stays text, with a word
    assert d.code == "DFM502" and d.parameter == "negative" and (d.span.col, d.span.end_col) == (18, 21)


def test_the_neg_part_is_a_prompt_of_its_own():
    ds = diags('prompt 0 "(a cat --neg dog)"\n')
    assert [d.message.split(":")[0] for d in ds] == ["`(` is never closed", "`)` closes no `(`"]
    assert diags('prompt 0 "(a cat) --neg (dog)"\n') == []


def test_a_triple_quoted_prompt_is_pointed_at_as_a_whole():
    (d,) = diags('prompt 0 """\n  a (cat\n  """\n')
    assert (d.span.line, d.span.col) == (3, 10)


def test_a_bad_weight_is_an_error_that_stops_compile():
    ds = diags('prompt 0 "(a:1.2.3)"\n')
    assert [(d.code, d.is_error) for d in ds] == [("DFM501", True)]


def test_unsupported_syntax_is_never_silent():
    # AND, editing and alternation are implemented; AND in a negative is text, and says so
    ds = diags('prompt 0 "a AND b"\nprompt 3 "[a:b:0.5]"\nnegative "[a|b] AND c"\n')
    assert [(d.code, d.parameter, d.span.line) for d in ds] == [("DFM502", "negative", 5)]


# ---- the table ----------------------------------------------------------------------------------------------


def test_the_table_keeps_the_text_and_carries_the_pieces():
    t = compile_text(HEAD + 'prompt 0 "a (red:1.3) cat --neg (blurry)"\nprompt 5 "a dog"\nprompt_crossfade 2\n'
                     'negative "[text]"\n')
    assert t["prompt"][0] == "a (red:1.3) cat" and t["negative_prompt"][0] == "[text], (blurry)"
    assert t["prompt_pieces"][0] == '[["a ",1.0],["red",1.3],[" cat",1.0]]'
    assert json.loads(t["negative_prompt_pieces"][0]) == [["text", S], [", ", 1.0], ["blurry", R]]
    assert t["prompt_pieces"][5] == '[["a dog",1.0]]'
    assert t["prompt_from_pieces"][5] == t["prompt_pieces"][4]  # the crossfade's source, parsed too
    assert t["negative_prompt_from_pieces"][9] == t["negative_prompt_pieces"][9]


# ---- chunks: A1111's tokenize_line ----------------------------------------------------------------------------

BOS, EOS, PAD, COMMA = 1000, 1001, 1002, 7


def chunks_of(*pieces_tokens):
    return make_chunks(pieces_tokens, bos=BOS, eos=EOS, pad=PAD, comma=COMMA)


def body(chunk):
    """A chunk's tokens between BOS and EOS, padding removed."""
    assert len(chunk.tokens) == CHUNK_TOKENS + 2 == len(chunk.weights)
    assert chunk.tokens[0] == BOS and EOS in chunk.tokens[1:]
    inner = list(chunk.tokens[1:])
    return inner[:inner.index(EOS)]


def test_a_short_prompt_is_one_padded_chunk():
    (c,) = chunks_of(([5, 6], 1.0), ([8], 1.5))
    assert c.tokens == (BOS, 5, 6, 8, EOS, *[PAD] * 72)
    assert c.weights == (1.0, 1.0, 1.0, 1.5, *[1.0] * 73)  # BOS, EOS and padding weigh 1


def test_an_empty_prompt_is_one_chunk_of_padding():
    (c,) = chunks_of()
    assert c.tokens == (BOS, EOS, *[PAD] * 75)


def test_75_tokens_fill_a_chunk_and_the_76th_starts_the_next():
    one = chunks_of((list(range(10, 85)), 1.0))
    assert len(one) == 1 and one[0].tokens == (BOS, *range(10, 85), EOS)
    two = chunks_of((list(range(10, 86)), 1.0))
    assert [body(c) for c in two] == [list(range(10, 85)), [85]]


def test_a_full_chunk_breaks_after_a_comma_within_20_tokens():
    toks = [20] * 60 + [COMMA] + [21] * 30  # the comma is token 61 of the first chunk: 14 before its end
    first, second = chunks_of((toks, 1.0))
    assert body(first) == [20] * 60 + [COMMA]
    assert body(second) == [21] * 30
    far = [20] * 50 + [COMMA] + [21] * 40  # 24 tokens after the comma: a hard cut at 75
    first, second = chunks_of((far, 1.0))
    assert len(body(first)) == 75 and body(second) == [21] * 16


def test_the_weights_move_with_their_tokens():
    first, second = chunks_of(([20] * 70 + [COMMA], 1.0), ([30] * 10, 1.3))
    assert body(second) == [30] * 10 and second.weights[1:11] == (1.3,) * 10
    assert first.weights[1:72] == (1.0,) * 71


def test_break_ends_a_chunk():
    a, b = chunks_of(([5], 1.0), None, ([6], 1.0))
    assert body(a) == [5] and body(b) == [6]
    empty, c = chunks_of(None, ([6], 1.0))  # A1111 emits the empty chunk too
    assert body(empty) == [] and body(c) == [6]


# ---- encoding with the tiny model --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sd(tiny_models):
    model = StableDiffusion(resolve_source(str(tiny_models["folder"])), pick_device("cpu"))
    model.load()
    return model


def encode(sd, text, clip_skip=1):
    return PromptEncoder(sd)(pieces_json(text), clip_skip)


PLAIN = ["", "a red cat", "a red cat, a blue dog on a red mat", "cat " * 75, "BREAKFAST at night"]


@pytest.mark.parametrize("text", PLAIN, ids=range(len(PLAIN)))
def test_a_plain_prompt_is_exactly_the_one_pass_encoding(sd, text):
    assert len(PromptEncoder(sd).chunks(pieces_json(text))) == 1
    assert torch.equal(encode(sd, text), sd.encode_text(text))  # the old path, byte for byte


def test_weight_one_is_exactly_the_plain_text(sd):
    assert torch.equal(encode(sd, "a (red:1.0) cat"), sd.encode_text("a red cat"))
    assert torch.equal(encode(sd, "(a red cat:1)"), sd.encode_text("a red cat"))


class FakeEncoder(torch.nn.Module):
    """Hidden states with a mean far from 0 (the tiny model's final layer norm makes it ~0): token id t at
    position p gives t/100 + p/1000 + d/10 in dimension d."""

    def forward(self, ids, output_hidden_states=False):
        pos = torch.arange(ids.shape[1])[None, :, None] / 1000
        return (ids[..., None] / 100 + pos + torch.arange(8)[None, None, :] / 10,)


def test_a_weight_scales_its_tokens_and_the_chunk_mean_is_restored(sd):
    fake = SimpleNamespace(tokenizer=sd.tokenizer, text_encoder=FakeEncoder(),
                           text_encoder_config=sd.text_encoder_config, placement=sd.placement, text_encoder_calls=0)
    enc = PromptEncoder(fake)
    plain = enc(pieces_json("a red cat"))
    weighted = enc(pieces_json("a (red:1.5) [cat]"))
    w = torch.tensor([1, 1, 1.5, S] + [1] * 73)[None, :, None]  # BOS, a, red, cat, EOS and padding
    expected = plain * w * (plain.mean() / (plain * w).mean())  # A1111: z * w, then rescaled to the old mean
    assert torch.allclose(weighted, expected, rtol=1e-6, atol=0)
    assert weighted.mean().item() == pytest.approx(plain.mean().item(), rel=1e-6)
    assert fake.text_encoder_calls == 2
    real = encode(sd, "a (red:1.5) cat")
    assert not torch.equal(real, encode(sd, "a red cat")) and torch.isfinite(real).all()


def test_a_long_prompt_is_chunks_encoded_one_by_one(sd):
    text = "cat " * 80  # one token per word with the tiny tokenizer: 75 + 5
    z = encode(sd, text)
    assert z.shape == (1, 2 * 77, 8)
    assert torch.equal(z[:, :77], sd.encode_text("cat " * 75))
    assert torch.equal(z[:, 77:], sd.encode_text("cat " * 5))
    with_comma = "cat " * 70 + ", " + "dog " * 10  # the comma is 4 tokens from the chunk's end
    z = encode(sd, with_comma)
    assert torch.equal(z[:, :77], sd.encode_text("cat " * 70 + ","))
    assert torch.equal(z[:, 77:], sd.encode_text("dog " * 10))


def test_clip_skip_is_a1111s_hidden_state_then_final_layer_norm(sd):
    ids = sd.tokenizer("a red cat", padding="max_length", max_length=77, return_tensors="pt").input_ids
    enc = sd.text_encoder
    norm = getattr(enc, "text_model", enc).final_layer_norm
    with torch.no_grad():
        expected = norm(enc(ids, output_hidden_states=True).hidden_states[-2]).float()
    assert torch.equal(encode(sd, "a red cat", clip_skip=2), expected)
    assert torch.equal(encode(sd, "a red cat", clip_skip=1), sd.encode_text("a red cat"))


def test_a_clip_skip_deeper_than_the_encoder_is_a_render_error(sd):
    table = make_table(3, clip_skip=[1, 2, 3])  # the tiny text encoder has 2 layers
    with pytest.raises(RenderError, match="clip_skip is 3 at frame 2.*2 layers"):
        prompt_warnings(table, sd)
    assert prompt_warnings(make_table(2, clip_skip=2), sd) == []


def test_long_prompts_are_noted(sd):
    (w,) = prompt_warnings(make_table(1, prompt="cat " * 80), sd)
    assert "2 chunks of 75 tokens" in w


# ---- renders ---------------------------------------------------------------------------------------------------


def frames(out, n):
    return [(out / f"frames/{i:05d}.png").read_bytes() for i in range(n)]


def rendered(tiny_models, path, n=2, **kw):
    render(make_table(n, model=str(tiny_models["folder"]), **kw), path, device="cpu")
    return frames(path, n)


class OldEncoder:
    """The runtime's encoding before weights: one 77-token pass of the text (`StableDiffusion.encode_text`)."""

    def __init__(self, sd):
        self.sd = sd

    def __call__(self, pieces, clip_skip):
        return self.sd.encode_text("".join(p[0] for p in read_pieces(pieces) if p is not None))


def test_a_plain_prompt_renders_byte_identical_to_the_old_path(tiny_models, tmp_path, monkeypatch):
    new = rendered(tiny_models, tmp_path / "new", 3, prompt="a red cat, a blue dog", cadence=2)
    monkeypatch.setattr(frame_module, "PromptEncoder", OldEncoder)
    old = rendered(tiny_models, tmp_path / "old", 3, prompt="a red cat, a blue dog", cadence=2)
    assert new == old


def test_weights_change_the_frame_and_weight_one_does_not(tiny_models, tmp_path):
    plain = rendered(tiny_models, tmp_path / "plain", prompt="a red cat")
    assert rendered(tiny_models, tmp_path / "one", prompt="a (red:1.0) cat") == plain
    heavy = rendered(tiny_models, tmp_path / "heavy", prompt="a (red:1.8) cat")
    assert heavy[0] != plain[0] and heavy[1] != plain[1]


def test_weights_in_the_negative_prompt(tiny_models, tmp_path):
    table = compile_text('dfm 1\nsize 64x64\nframes 1\nsteps 4\nsampler euler\nprompt 0 "a cat"\n'
                         f'negative "blurry"\nmodel "{tiny_models["folder"]}"\n')
    render(table, tmp_path / "a", device="cpu")
    heavy = compile_text('dfm 1\nsize 64x64\nframes 1\nsteps 4\nsampler euler\nprompt 0 "a cat"\n'
                         f'negative "(blurry:1.6)"\nmodel "{tiny_models["folder"]}"\n')
    render(heavy, tmp_path / "b", device="cpu")
    assert frames(tmp_path / "a", 1) != frames(tmp_path / "b", 1)


def test_a_long_prompt_and_a_short_negative_render_in_two_passes(tiny_models, tmp_path):
    table = make_table(1, model=str(tiny_models["folder"]), prompt="cat " * 80)
    report = render(table, tmp_path, device="cpu")
    assert report.unet_calls == 2 * 4  # cond (2 chunks) and uncond (1 chunk) apart, as A1111 does
    assert any("2 chunks" in w for w in report.warnings)


def test_a_crossfade_between_prompts_of_different_lengths(tiny_models, tmp_path):
    table = compile_text(f'dfm 1\nsize 64x64\nframes 3\nsteps 4\nsampler euler\nstrength 0.5\n'
                         f'model "{tiny_models["folder"]}"\nprompt_crossfade 2\nprompt 0 "a cat"\n'
                         f'prompt 1 "{"dog " * 80}"\n')
    assert list(table["prompt_blend"]) == [1.0, 1 / 3, 2 / 3]
    render(table, tmp_path, device="cpu")  # the short prompt is padded with the empty prompt's chunk
    assert len(frames(tmp_path, 3)) == 3


def test_clip_skip_changes_the_frame(tiny_models, tmp_path):
    assert rendered(tiny_models, tmp_path / "a", 1, clip_skip=2) != rendered(tiny_models, tmp_path / "b", 1)


# ---- any text -------------------------------------------------------------------------------------------------

PROMPT_BITS = ["(", ")", "[", "]", ":", "\\", "|", "<", ">", "`", "AND", "BREAK", "lora", "a", " ", "1.5", ".",
               "-", ",", "é", '"', "\n"]


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(PROMPT_BITS), max_size=30).map("".join))
def test_any_text_parses_and_its_issues_lie_inside_it(text):
    found = pieces(text)
    assert found and all(p == "BREAK" or (isinstance(p[0], str) and isinstance(p[1], float)) for p in found)
    assert [p if p == "BREAK" else tuple(p) for p in json.loads(pieces_json(text))] == found
    for issue in check(text):
        assert 0 <= issue.start < issue.end <= len(text) and issue.code in ("DFM501", "DFM502")
    if not any(c in text for c in "()[]\\<:") and "BREAK" not in text:
        assert found == [(text, 1.0)]  # no syntax: the text itself, weight 1
