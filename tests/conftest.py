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
