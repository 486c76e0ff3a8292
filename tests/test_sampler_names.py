"""Samplers by the names users paste: A1111/Deforum labels and A1111 1.9+'s schedule types map to dfm samplers,
each of which builds the diffusers scheduler with the matching settings; approximations warn on import."""

import json

import numpy as np
import pytest

from dfm.compiler import catalogue as cat
from dfm.compiler.deforum_import import import_settings
from dfm.compiler.deforum_names import A1111_SAMPLERS, a1111_sampler
from dfm.runtime import samplers
from dfm.runtime.models import CONFIGS

BASE = json.loads((CONFIGS / "sd15" / "scheduler" / "scheduler_config.json").read_text())  # SD 1.5's own

# (A1111 label, schedule type or None) -> (dfm sampler, diffusers class, the config it must carry)
EXACT = [
    ("Euler a", None, "euler_a", "EulerAncestralDiscreteScheduler", {}),
    ("Euler", None, "euler", "EulerDiscreteScheduler", {"use_karras_sigmas": False}),
    ("DPM++ 2M Karras", None, "dpmpp_2m_karras", "DPMSolverMultistepScheduler",
     {"use_karras_sigmas": True, "algorithm_type": "dpmsolver++", "solver_order": 2}),
    ("DPM++ 2M", "Karras", "dpmpp_2m_karras", "DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    ("DPM++ 2M", "Automatic", "dpmpp_2m_karras", "DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    ("DPM++ 2M", "Uniform", "dpmpp_2m", "DPMSolverMultistepScheduler", {"use_karras_sigmas": False}),
    ("DPM++ 2M SDE", "Automatic", "dpmpp_2m_sde_exponential", "DPMSolverMultistepScheduler",
     {"use_exponential_sigmas": True, "algorithm_type": "sde-dpmsolver++"}),
    ("DPM++ 2M SDE Exponential", None, "dpmpp_2m_sde_exponential", "DPMSolverMultistepScheduler",
     {"use_exponential_sigmas": True, "algorithm_type": "sde-dpmsolver++"}),
    ("DPM++ 2M SDE Karras", None, "dpmpp_2m_sde_karras", "DPMSolverMultistepScheduler",
     {"use_karras_sigmas": True, "algorithm_type": "sde-dpmsolver++"}),
    ("DPM++ 2M", "Exponential", "dpmpp_2m_exponential", "DPMSolverMultistepScheduler",
     {"use_exponential_sigmas": True, "algorithm_type": "dpmsolver++"}),
    ("Euler", "Karras", "euler_karras", "EulerDiscreteScheduler", {"use_karras_sigmas": True}),
    ("Euler", "Exponential", "euler_exponential", "EulerDiscreteScheduler", {"use_exponential_sigmas": True}),
    ("Heun", "Karras", "heun_karras", "HeunDiscreteScheduler", {"use_karras_sigmas": True}),
    ("LMS Karras", None, "klms_karras", "LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    ("DPM2 a Karras", None, "dpm2_a_karras", "KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": True}),
    ("DDIM", None, "ddim", "DDIMScheduler", {}),
    ("PLMS", None, "plms", "PNDMScheduler", {"skip_prk_steps": True}),
    ("UniPC", None, "unipc", "UniPCMultistepScheduler", {}),
    ("LCM", None, "lcm", "LCMScheduler", {}),
]


@pytest.mark.parametrize(("label", "schedule", "name", "cls", "config"), EXACT)
def test_a1111_names_build_the_matching_diffusers_scheduler(label, schedule, name, cls, config):
    got, warning = a1111_sampler(label, schedule)
    assert (got, warning) == (name, None)
    sched = samplers.make_scheduler(name, BASE)
    assert type(sched).__name__ == cls
    assert {k: sched.config[k] for k in config} == config
    plain = "trailing" not in name
    assert sched.config.timestep_spacing == ("linspace" if plain else "trailing")


def test_karras_and_exponential_sigmas_are_really_used():
    def sigmas(name):
        s = samplers.make_scheduler(name, BASE)
        s.set_timesteps(10)
        return np.asarray(s.sigmas)

    plain, karras, expo = sigmas("euler"), sigmas("euler_karras"), sigmas("euler_exponential")
    assert not np.allclose(plain, karras) and not np.allclose(plain, expo) and not np.allclose(karras, expo)
    # exponential: log-sigmas evenly spaced (k-diffusion get_sigmas_exponential), before the final 0
    steps = np.diff(np.log(expo[:-1]))
    np.testing.assert_allclose(steps, steps[0], rtol=1e-4)


@pytest.mark.parametrize(("label", "schedule", "name"), [
    ("Euler", "SGM Uniform", "euler_trailing"),
    ("DPM++ 2M SGM Uniform", None, "dpmpp_2m_trailing"),
    ("Euler a", "Simple", "euler_a_trailing"),
    ("DPM++ SDE Karras", None, "dpmpp_2m_sde_karras"),
    ("DPM++ SDE", "Automatic", "dpmpp_2m_sde_karras"),
])
def test_approximations_say_so(label, schedule, name):
    got, warning = a1111_sampler(label, schedule)
    assert got == name and warning


@pytest.mark.parametrize(("label", "schedule", "says"), [
    ("DPM fast", None, "no diffusers scheduler"), ("Restart", None, "no sampler `Restart`"),
    ("Euler a", "Karras", "Euler a with schedule type Karras"), ("Euler", "Align Your Steps", "Align Your Steps"),
])
def test_names_dfm_cannot_render_are_refused_with_the_reason(label, schedule, says):
    got, why = a1111_sampler(label, schedule)
    assert got is None and says in why


def test_every_sampler_has_a_label_that_reads_back():
    assert set(A1111_SAMPLERS) == set(samplers.SAMPLERS) == set(cat.SAMPLERS)
    for name, label in A1111_SAMPLERS.items():
        assert a1111_sampler(label) == (name, None), label


def test_deforum_import_reads_the_schedule_type_and_warns_on_approximations():
    base = {"max_frames": 3, "prompts": {"0": "x"}}
    r = import_settings({**base, "sampler": "DPM++ 2M", "scheduler": "Karras"})
    assert "sampler dpmpp_2m_karras" in r.text and "scheduler" not in r.warned_keys
    r = import_settings({**base, "sampler": "DPM++ SDE Karras"})
    assert "sampler dpmpp_2m_sde_karras" in r.text
    assert any("approximated by dpmpp_2m_sde_karras" in w for w in r.warnings)
    r = import_settings({**base, "sampler": "Euler", "scheduler": "Beta"})
    assert any("not supported" in w and "Beta" in w for w in r.warnings) and "sampler" in r.warned_keys
