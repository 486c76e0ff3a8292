"""Second-order samplers (Heun, DPM2) and PLMS: what the compiler writes and what the sampler really runs.

A1111 counts every model call of its denoiser (`CFGDenoiser.step`) and builds the prompt schedules of a
`second_order` sampler over `steps × 2` (processing.py `step_multiplier`); diffusers' second-order
schedulers run 2n - 1 evaluations for n steps (the last step is first-order, as in k-diffusion's Heun).
These tests count the evaluations of the real schedulers rather than trusting either fact.
"""

from __future__ import annotations

import copy
import functools
import json

import numpy as np
import pytest
import torch

from dfm.api import compile_text
from dfm.compiler import catalogue as cat
from dfm.compiler.lower import sampler_evaluations
from dfm.runtime import samplers
from dfm.runtime.errors import RenderError
from dfm.runtime.prompts import read_prompt, schedule_multiplier
from dfm.runtime.samplers import StepCond

CPU = torch.device("cpu")
# the scheduler config of an SD 1.x model, as small as from_config needs
CONFIG = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
          "prediction_type": "epsilon"}


def scene(sampler: str, prompt: str, steps: int = 4, extra: str = "") -> str:
    return f'dfm 1\nmode none\nsize 64x64\nsteps {steps}\nsampler {sampler}\nprompt 0 "{prompt}"\n{extra}'


def _schedule_ends(value: str) -> list[list[int]]:
    return [[end for end, _ in part["schedule"]] for part in json.loads(value)["parts"]]


@pytest.mark.parametrize("name", cat.SAMPLERS)
def test_the_catalogue_order_table_is_the_runtime_schedulers_order(name):
    scheduler = samplers.make_scheduler(name, CONFIG)
    assert cat.step_multiplier(name) == scheduler.order == schedule_multiplier(name)
    assert (name in cat.SECOND_ORDER_SAMPLERS) == (scheduler.order == 2)


@functools.cache
def _pristine(name: str):
    # building a Karras DPM2 scheduler costs ~0.3 s (diffusers maps 1,000 sigmas one by one); a copy of a fresh
    # one is the same state, so _count copies one per sampler rather than building 15
    return samplers.make_scheduler(name, CONFIG)


def _count(name: str, steps: int, effective: int | None) -> int:
    """The eps calls of one real denoise (txt2img when `effective` is None)."""
    calls = []

    def eps(latents, t, emb):
        calls.append(1)
        return torch.zeros_like(latents)

    cond = torch.zeros(1, 77, 8)
    kw = dict(shape=(1, 4, 4, 4)) if effective is None else dict(init_latents=torch.zeros(1, 4, 4, 4))
    samplers.denoise(eps, copy.deepcopy(_pristine(name)), cond=cond, cfg_scale=1.0, steps=steps,
                     effective_steps=steps if effective is None else effective,
                     generator=samplers.frame_generator(1, CPU),
                     takes_generator=samplers.SAMPLERS[name].takes_generator, **kw)
    return len(calls)


@pytest.mark.parametrize("name", ["heun", "dpm2_a_karras", "plms", "euler"])
def test_the_compilers_evaluation_count_is_what_the_scheduler_runs(name):
    for steps in (1, 2, 5):
        assert _count(name, steps, None) == int(sampler_evaluations(name, np.array([steps]), np.array([steps]))[0])
        for n in range(0, steps + 1):
            assert _count(name, steps, n) == int(sampler_evaluations(name, np.array([steps]), np.array([n]))[0])
    # the figures themselves, for 5 steps of which 3 run
    expected = {"heun": 5, "dpm2_a_karras": 5, "plms": 4, "euler": 3}[name]
    assert _count(name, 5, 3) == expected


def test_a_second_order_samplers_schedule_spans_twice_its_steps():
    heun = compile_text(scene("heun", "a [red:blue:0.5] cat"))
    euler = compile_text(scene("euler", "a [red:blue:0.5] cat"))
    # A1111: total_steps 8 for Heun at 4 steps, int(0.5 × 8) = 4; Euler: int(0.5 × 4) = 2
    assert _schedule_ends(heun["prompt_pieces"][0]) == [[4, 8]]
    assert _schedule_ends(euler["prompt_pieces"][0]) == [[2, 4]]
    # an integer `when` counts the same doubled steps, as in A1111 ("[a:b:3]" switches after call 3)
    assert _schedule_ends(compile_text(scene("heun", "[a:b:3]"))["prompt_pieces"][0]) == [[3, 8]]
    # unet_evals: 2 × 4 - 1 = 7 evaluations of (1 part + the CFG pass)
    assert int(heun["unet_evals"][0]) == 7 * 2 and int(euler["unet_evals"][0]) == 4 * 2


def test_heun_switches_the_prompt_at_a1111s_evaluation():
    """The compiled schedule through the real Heun loop: which text each UNet evaluation sees."""
    table = compile_text(scene("heun", "[a cat:a dog:0.5]"))
    prompt = read_prompt(str(table["prompt_pieces"][0]), 4 * schedule_multiplier("heun"))
    texts = {json.dumps([["a cat", 1.0]], separators=(",", ":")): 0.0,
             json.dumps([["a dog", 1.0]], separators=(",", ":")): 1.0}
    seen: list[float] = []

    def conditioning(s: int) -> StepCond:
        return StepCond(((1.0, torch.full((1, 77, 8), texts[prompt.parts[0].at(s)])),), None)

    def eps(latents, t, emb):
        seen.append(float(emb.mean()))
        return torch.zeros_like(latents)

    samplers.denoise(eps, samplers.make_scheduler("heun", CONFIG), conditioning=conditioning, cfg_scale=1.0,
                     steps=4, effective_steps=4, generator=samplers.frame_generator(1, CPU), takes_generator=False,
                     shape=(1, 4, 4, 4))
    # A1111: CFGDenoiser.step 0..6, schedule [(4, cat), (8, dog)]: calls 0-4 "a cat", calls 5-6 "a dog"
    assert seen == [0.0] * 5 + [1.0] * 2


def test_the_runtime_checks_a_schedules_end_against_the_sampler():
    value = json.dumps({"parts": [{"weight": 1.0, "schedule": [[4, [["a", 1.0]]], [8, [["b", 1.0]]]]}]})
    assert read_prompt(value, 8).parts[0].ends == [4, 8]
    assert read_prompt(value, (4, 8)).parts[0].at(5) == '[["b",1.0]]'
    with pytest.raises(RenderError, match="ends at step 8"):
        read_prompt(value, 4)  # a Heun table handed to a first-order sampler's row of 4 steps
