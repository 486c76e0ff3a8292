"""Test setup: no network, quiet libraries, a throwaway Hugging Face home and cache.

The environment must be set before anything imports diffusers or transformers (huggingface_hub reads
HF_HUB_OFFLINE once, at import), so it happens here, at the top of the first module pytest loads.
"""

import os
import tempfile

_HOME = tempfile.mkdtemp(prefix="dfm-tests-")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_VERBOSITY"] = "error"
os.environ["DIFFUSERS_VERBOSITY"] = "error"
os.environ["HF_HOME"] = os.path.join(_HOME, "hf")
os.environ["XDG_CACHE_HOME"] = os.path.join(_HOME, "cache")  # dfm's model-hash cache
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402 - after the environment above, on purpose


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """The tiny random SD model saved once per session: diffusers folder, .safetensors and .ckpt beside a
    config skeleton, and a bare .safetensors with nothing next to it."""
    import torch
    from tiny_models import save_model_forms

    # tiny tensors gain nothing from threads, and spinning worker threads crawl when the 2 cores are busy
    torch.set_num_threads(1)
    return save_model_forms(tmp_path_factory.mktemp("models"))


def pytest_configure(config):
    # diffusers' schedulers trip numpy 2's copy-keyword deprecation; not ours to fix
    config.addinivalue_line("filterwarnings", "ignore:__array__ implementation:DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore:__array_wrap__ must accept:DeprecationWarning")
