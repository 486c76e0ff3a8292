"""`dfm check`: every class of mistake gets its code, its position and a fix."""

import pytest

from dfm.api import check_text
from dfm.compiler import catalogue

HEAD = 'dfm 1\nframes 100\nprompt 0 "a cat"\n'


def diags(body: str, head: str = HEAD):
    return check_text(head + body, "s.dfm")


def codes(body: str, head: str = HEAD) -> list[str]:
    return [d.code for d in diags(body, head)]


def only(body: str, head: str = HEAD):
    ds = diags(body, head)
    assert len(ds) == 1, [(d.code, d.message) for d in ds]
    return ds[0]


def test_clean_scene_has_no_diagnostics():
    assert diags("zoom 0:(1.0), 50:(1.04)\nstrength 0.65\nsampler euler_a\nmode 2d\n") == []


def test_unknown_parameter_with_did_you_mean():
    d = only("zooom 1.02\n")
    assert d.code == "DFM101" and "`zoom`" in d.help and (d.span.line, d.span.col) == (4, 1)


def test_deforum_aliases_are_accepted():
    assert codes("zoom_schedule 0:(1.02)\nscale 7\nmax_frames 50\nstrength_schedule 0: (0.65)\n",
                 head='dfm 1\nprompt 0 "x"\n') == []


@pytest.mark.parametrize("body,code,word", [
    ("sampler euler_ancestrl\n", "DFM102", "euler_a"),
    ("mode 4d\n", "DFM102", "choices"),
    ("border mirror\n", "DFM102", "choices"),
    ("color_coherence labb\n", "DFM102", "lab"),
    ("seed 42 iterate\n", "DFM102", "iter"),
])
def test_unknown_choice(body, code, word):
    d = only(body)
    assert d.code == code and word in d.help


def test_deforum_and_a1111_sampler_names_map():
    for name in ["Euler a", "euler_ancestral", "DPM++ 2M Karras", "klms", "LMS", "DDIM"]:
        assert codes(f'sampler "{name}"\n') == [], name


def test_unsupported_sampler_is_an_error_not_a_substitute():
    d = only('sampler "DPM fast"\n')
    assert d.code == "DFM107" and "no diffusers" in d.message


@pytest.mark.parametrize("body,code", [
    ("strength 1.5\n", "DFM401"),      # a schedule constant: checked per frame
    ("cadence 0\n", "DFM104"),
    ("frames 0\n", "DFM104"),
    ("fov 180\n", "DFM401"),
    ("fov 0:(0)\n", "DFM401"),
    ("size 500x512\n", "DFM104"),
    ("cadence 1.5\n", "DFM103"),
    ('fps "fast"\n', "DFM103"),
    ("size 512\n", "DFM103"),
    ("mode 2d 3d\n", "DFM105"),
    ("perspective_flip maybe\n", "DFM103"),
])
def test_wrong_type_or_out_of_range(body, code):
    assert code in codes(body)


def test_size_suggests_a_fix():
    d = only("size 500x510\n")
    assert "496x504" in d.help


@pytest.mark.parametrize("body,code,name", [
    ("zoom 0:(sinn(t))\n", "DFM201", "sin"),
    ("zoom 0:(1 + tt)\n", "DFM202", "t"),
    ("zoom 0:(where(t>1, 2))\n", "DFM203", None),
    ("zoom 0:(pi2)\n", "DFM202", "pi"),
    ("cadence t\n", "DFM202", None),
])
def test_expression_names_and_arity(body, code, name):
    d = next(d for d in diags(body) if d.code == code)
    if name:
        assert f"`{name}`" in d.help


def test_keys():
    assert "DFM301" in codes("zoom 0:(1), 10:(2), 10:(3)\n")
    assert "DFM302" in codes("zoom 0:(1), 20:(2), 10:(3)\n")
    d = next(d for d in diags("zoom 0:(1), 200:(2)\n") if d.code == "DFM303")
    assert not d.is_error and d.frame == 200
    d = next(d for d in diags("zoom 10:(1)\n") if d.code == "DFM307")
    assert not d.is_error
    assert "DFM306" in codes("zoom 0:(1) bouncy, 10:(2)\n")


def test_parameter_unused_in_mode_is_a_warning():
    d = only("rotation_3d_x 0:(1)\n")
    assert d.code == "DFM304" and not d.is_error and "3d" in d.help
    assert codes("mode 3d\nrotation_3d_x 0:(1)\n") == []
    assert codes("mode 3d\nborder wrap\n") == ["DFM304"]


def test_no_prompt_is_an_error():
    assert codes("zoom 1\n", head="dfm 1\n") == ["DFM305"]


def test_missing_version_is_a_warning_wrong_version_an_error():
    ds = check_text('prompt 0 "x"\n')
    assert [(d.code, d.is_error) for d in ds] == [("DFM020", False)]
    assert [(d.code, d.is_error) for d in check_text('dfm 2\nprompt 0 "x"\n')] == [("DFM020", True)]


def test_setting_given_twice_and_schedule_given_twice():
    assert "DFM106" in codes("fps 12\nfps 24\n")
    assert "DFM109" in codes("zoom 1\nzoom 2\n")


def test_frames_and_duration_conflict():
    assert "DFM108" in codes("duration 5s\n")


def test_beats_need_bpm():
    assert "DFM204" in codes("zoom 0:(1), 8b:(2)\n")
    assert codes("bpm 120\nzoom 0:(1), 8b:(2)\n") == []


def test_per_frame_out_of_range_names_frame_and_value():
    d = only("strength 0:(0.5), 40:(0.5) step, 50:(1.2)\n")
    assert d.code == "DFM401" and d.frame == 50 and "1.2" in d.message and d.parameter == "strength"
    assert (d.span.line, d.span.col) == (4, 34)  # the key that produced the value
    d = only("strength 0:(0.5), 40:(1.2)\n")  # interpolation crosses 1 between the keys
    # ... because of the key it heads for: that key is blamed, not the one in range before it
    assert d.frame == 29 and "1.0075" in d.message and (d.span.line, d.span.col) == (4, 19)


def test_nan_or_infinity_at_a_frame():
    d = only("zoom 0:(1 + 1/(t - 7))\n")
    assert d.code == "DFM402" and d.frame == 7
    d = only("translation_x 0:(log(5 - t))\n")
    assert d.code == "DFM402" and d.frame == 5 and "-inf" in d.message


def test_quoted_deforum_schedule_is_accepted():
    assert codes('zoom "0:(1.02), 10:(1.0)"\n') == []


def test_all_errors_reported_in_one_pass_and_sorted():
    ds = diags("zoom 0:(1,04)\nfoo 1\nsampler bogus\nstrength 0:(2)\n")
    assert [d.code for d in ds] == ["DFM011", "DFM101", "DFM102", "DFM401"]
    assert [d.span.line for d in ds] == sorted(d.span.line for d in ds)


def test_catalogue_names_are_unique_and_aliases_unambiguous():
    names = [p.name for p in catalogue.PARAMS]
    assert len(names) == len(set(names))
    seen = {}
    for p in catalogue.PARAMS:
        for a in (p.name, *p.aliases):
            assert seen.setdefault(a, p.name) == p.name, a


def test_every_schedule_default_is_in_range():
    for p in catalogue.SCHEDULES:
        assert p.in_range(float(p.default)), p.name


def test_frame_count_is_capped():
    assert "DFM104" in codes("frames 1000000000\n", head='dfm 1\nprompt 0 "x"\n')
    assert "DFM104" in codes("fps 60\nduration 100000s\n", head='dfm 1\nprompt 0 "x"\n')


def test_deforum_random_seed_minus_one_explains_itself():
    d = only("seed -1\n")
    assert d.code == "DFM104" and "reproducible" in d.help


def test_every_deforum_key_gets_a_precise_diagnostic():
    import json
    from pathlib import Path

    from dfm.compiler.deforum_names import param_for_key

    keys = json.loads((Path(__file__).parent / "fixtures" / "a1111_settings_keys.json").read_text())["keys"]
    for key in keys:
        if param_for_key(key) is not None:
            continue  # a dfm parameter under its Deforum name
        d = [d for d in check_text(f'dfm 1\nprompt 0 "a"\n{key} 1\n') if d.code == "DFM101"]
        assert d and "Deforum key" in d[0].message and "did you mean" not in (d[0].help or ""), key
    for key, words in (("seed_resize_from_w", "seed_resize_from WIDTHxHEIGHT"),
                       ("enable_subseed_scheduling", "always used"), ("noise_type", "Gaussian")):
        assert words in [d for d in check_text(f'dfm 1\nprompt 0 "a"\n{key} 1\n') if d.code == "DFM101"][0].help


def test_the_frame_variable_suggests_t():
    d = [d for d in check_text('dfm 1\nprompt 0 "a"\nzoom 1 + 0.01*frame\n') if d.code == "DFM202"]
    assert d and d[0].help == "did you mean `t`?"


def test_deforum_quoted_expression_keys_parse_and_compile_as_deforum_evaluates_them():
    from dfm.api import compile_result
    from dfm.dsl.formatter import format_source

    src = 'dfm 1\nframes 10\nprompt 0 "a"\nseed_schedule 0:(5), "max_f-2":(-1), "max_f-1":(7)\n' \
          'zoom 0:(1), "max_f/2":(2)\n'
    r = compile_result(src)
    assert r.errors == [] and list(r.table["zoom"][:5]) == [1.0, 1.25, 1.5, 1.75, 2.0]  # int(9/2) = frame 4
    assert r.table["seed"][8] == 7 and r.table["seed"][0] == 5
    assert '"max_f-2":(-1)' in format_source(src) and format_source(format_source(src)) == format_source(src)
    bad = [d for d in check_text('dfm 1\nprompt 0 "a"\nzoom 0:(1), "t+1":(2)\n') if d.is_error]
    assert bad[0].code == "DFM202" and "max_f" in bad[0].help
    junk = [d for d in check_text('dfm 1\nprompt 0 "a"\nzoom 0:(1), "1,5":(2)\n') if d.is_error]
    assert junk[0].code == "DFM001" and "quoted key" in junk[0].message


def test_a_deforum_only_key_with_deforum_syntax_says_what_it_is():
    src = 'dfm 1\nprompt 0 "a"\nsampler_schedule 0:("Euler a")\n'
    d = check_text(src)
    assert [x.code for x in d] == ["DFM101"] and "sampler" in d[0].help
    assert src[d[0].span.start:d[0].span.end] == "sampler_schedule"


def _unreached_all(prompt: str, head: str = "dfm 1\nmode 2d\nframes 6\nsteps 10\nstrength 0.8\n"):
    """The DFM504s of a scene whose img2img frames run int(0.2 × 10) = 1 step, and the scene."""
    text = head + prompt + "\n"
    return [d for d in check_text(text) if d.code == "DFM504"], text


def _unreached(prompt: str, head: str = "dfm 1\nmode 2d\nframes 6\nsteps 10\nstrength 0.8\n"):
    (d,), text = _unreached_all(prompt, head)
    return d, text


def test_an_edit_that_never_switches_is_pointed_at_its_bracket():
    d, text = _unreached('prompt "a [cat:dog:5] in a field"')
    assert text[d.span.start:d.span.end] == "[cat:dog:5]"
    assert (d.span.line, d.span.col) == (6, 11) and d.frame == 1


def test_the_bracket_pointed_at_is_the_one_that_switches_first():
    # the edit switches after step 8, the alternation after step 1: the alternation is the cause
    d, text = _unreached('prompt "[old:new:8] house, [red|blue] roof"')
    assert text[d.span.start:d.span.end] == "[red|blue]"
    # an edit nested in another, the inner one earlier; escapes before it keep the columns true
    d, text = _unreached(r'prompt "a \"quoted\" [sea:[lake:pond:2]:6] view"')
    assert text[d.span.start:d.span.end] == "[lake:pond:2]"


def test_an_unreached_edit_in_a_sub_prompt_or_a_negative_points_at_its_bracket():
    d, text = _unreached('prompt "a house" weight 1 and "a [red:blue:0.5] door" weight 0.5')
    assert text[d.span.start:d.span.end] == "[red:blue:0.5]"
    d, text = _unreached('prompt "a boat"\nnegative "blurry, [grain:noise:4]"')
    assert text[d.span.start:d.span.end] == "[grain:noise:4]" and d.parameter == "negative"


def test_an_unreached_edit_in_a_prompts_neg_part_is_said_apart_from_its_positive_part():
    """Deforum's `positive --neg negative`: each part's edit is read from its own column and pointed at."""
    ds, text = _unreached_all('prompt "a [cat:dog:5] here --neg [ugly:blurry:5]"')
    assert [text[d.span.start:d.span.end] for d in ds] == ["[cat:dog:5]", "[ugly:blurry:5]"]
    assert "`--neg` part" in ds[1].message and ds[1].parameter == "prompt"


def test_an_edit_whose_when_is_a_backtick_points_at_the_statement():
    # the step is known only per frame: the bracket is not found in the text as written
    d, text = _unreached('prompt "a [cat:dog:`0.5+t*0`] here"')
    assert text[d.span.start:d.span.end] == 'prompt "a [cat:dog:`0.5+t*0`] here"'
