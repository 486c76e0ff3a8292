"""Loading a Stable Diffusion model (1.x, 2.x, SDXL, and the rectified-flow SD3/SD3.5 and Flux) and running
its parts: `StableDiffusion`.

Only the components a render uses are loaded (tokenizer, text encoder, UNet, VAE; never a safety
checker), each on first use. Everything is loaded with `local_files_only=True`; a hub id is first
resolved to a local snapshot (model_source.py), so a missing model fails at once instead of retrying the
network. The family is detected, never configured (model_family.py).

The names of model_source.py and model_family.py are imported from here too, as they were before the
split: importers of `dfm.runtime.models` keep working.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..contract import families
from ..contract.errors import UserError
from .device import Placement
from .errors import RenderError
from .model_family import (  # noqa: F401 (some re-exported for importers of models)
    CONFIGS,
    config_skeleton,
    detect_family,
    file_key_family,
    flow_file_family,
    folder_family,
    folder_model_family,
    load_pickle_weights,
)
from .model_source import (  # noqa: F401 (some re-exported for importers of models)
    HUB_ID,
    LOAD_HELP,
    PICKLE_SUFFIXES,
    ModelSource,
    fetch_snapshot,
    first_line,
    hub_snapshot,
    model_identity,
    resolve_source,
)

if TYPE_CHECKING:
    from .samplers import Residuals

FOLDER_PARTS = ("tokenizer", "text_encoder", "unet", "vae", "scheduler")  # a diffusers SD folder's components
SDXL_PARTS = ("tokenizer_2", "text_encoder_2")  # and an SDXL folder's two more
FLOW_BASES = ("sd3", "flux")  # rectified-flow models: a transformer predicts a velocity (runtime/flow_matching.py)
# an SD3 / Flux folder's components: SD3 has two CLIPs and a T5 (text_encoder_3, optional in diffusers: without
# it the T5 tokens are zeros), Flux one CLIP (pooled only) and its T5 as text_encoder_2
FLOW_PARTS = ("tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2", "transformer", "vae", "scheduler")
# T5 tokens read per prompt: diffusers' defaults (SD3: 256; Flux: 512, which FLUX.1-schnell's card lowers to 256)
T5_MAX_LENGTH = {"sd3": 256, "sd35-turbo": 256, "flux-dev": 512, "flux-schnell": 256, "flux-kontext": 512}


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Silence the libraries' own progress bars, log lines and warnings while loading ("modules kept in
    float32: []", deprecation notes): dfm reports progress itself and turns real failures into one
    RenderError each. Everything is restored afterwards."""
    import warnings

    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    was = dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled()
    levels = dlog.get_verbosity(), tlog.get_verbosity()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        dlog.set_verbosity(levels[0])
        tlog.set_verbosity(levels[1])
        if was[0]:
            dlog.enable_progress_bar()
        if was[1]:
            tlog.enable_progress_bar()


def guidance_embedding(w: Tensor, dim: int) -> Tensor:
    """The sinusoidal embedding (VDM's, as diffusers' LCM pipelines compute it) of guidance weights `w`
    (shape (B,)), scaled by 1000 like a timestep: (B, dim), sines then cosines, zero-padded to an odd dim."""
    half = dim // 2
    if half < 2:
        raise RenderError(f"a UNet with time_cond_proj_dim {dim} cannot take a guidance embedding (needs >= 4)",
                          LOAD_HELP)
    step = torch.log(torch.tensor(10000.0)) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -step)
    args = (w.float() * 1000.0)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return torch.nn.functional.pad(emb, (0, 1)) if dim % 2 else emb


# ---- the loaded model -----------------------------------------------------------------------------------


class StableDiffusion:
    """A Stable Diffusion model whose components load on first use (or all at once with `load`), placed
    on one device."""

    def __init__(
        self,
        source: ModelSource,
        placement: Placement,
        *,
        allow_pickle: bool = False,
        sha256: str | None = None,
    ) -> None:
        self.source = source
        self.placement = placement
        self.allow_pickle = allow_pickle
        self.text_encoder_calls = 0
        self.unet_calls = 0
        # the ControlNets loaded to run beside this model, by the unit's model spec (runtime/controlnet.py):
        # kept with the model, so a render reusing it (watch mode, a worker's next task) reuses them too
        self.controlnets: dict[str, object] = {}
        # what a guidance-embedded UNet is given (`set_guidance_scale`); until the render sets the row's:
        # diffusers' LatentConsistencyModelPipeline default
        self.guidance_scale = 8.5
        # the diffusers folder the components load from (None for a single file) and the checked sha256
        self.folder, self.sha256 = model_identity(source, allow_pickle=allow_pickle, sha256=sha256)

    # -- loading --

    def load(self) -> None:
        """Load every component a render uses now (the render's load stage) instead of on first use."""
        self.check_folder()
        _ = self.tokenizer, self.text_encoder, self.unet, self.vae, self.scheduler_config
        if self.is_flow:
            _ = self.tokenizer_2, self.text_encoder_2, self.t5_tokenizer, self.t5_encoder
        elif self.family == "sdxl":
            _ = self.tokenizer_2, self.text_encoder_2
            self.check_sdxl()

    def check_sdxl(self) -> None:
        """The UNet's added-conditioning width is the pooled embedding plus six time ids, as SDXL's is."""
        cfg = self.unet.config
        pooled = int(self.text_encoder_2.config.projection_dim)
        want = int(cfg.addition_time_embed_dim) * 6 + pooled
        if int(cfg.projection_class_embeddings_input_dim) != want:
            raise RenderError(
                f"{self.source.describe()}: the UNet expects {cfg.projection_class_embeddings_input_dim} added "
                f"features, but the pooled text embedding ({pooled}) and six time ids make {want}",
                "use an SDXL base model (a refiner alone is not supported)",
            )
        width = int(self.text_encoder_config.hidden_size) + int(self.text_encoder_2.config.hidden_size)
        if pooled > width:
            raise RenderError(f"{self.source.describe()}: a pooled embedding of {pooled} is wider than the "
                              f"text features ({width})", LOAD_HELP)

    def check_folder(self) -> None:
        """A diffusers folder has every component's subfolder, or one error names all that are missing
        (a missing text_encoder/ would otherwise surface later as a "broken tokenizer")."""
        if self.is_flow:
            folder = self.parts_folder
            # a single file brings its own transformer: the folder beside it needs the rest only
            parts = tuple(n for n in FLOW_PARTS if self.folder is not None or n != "transformer")
        elif self.folder is None:
            return
        else:
            folder, parts = self.folder, FOLDER_PARTS + (SDXL_PARTS if self.family == "sdxl" else ())
        missing = [n for n in parts if not (folder / n).is_dir()]
        if missing:
            where = (self.source.describe() if folder == self.folder
                     else f"{folder} (the parts beside {self.source.path.name})")
            raise RenderError(f"{where} has no {', '.join(m + '/' for m in missing)} folder"
                              + ("s" if len(missing) > 1 else ""), LOAD_HELP)

    @cached_property
    def parts_folder(self) -> Path:
        """The diffusers folder a flow model's components load from. A single-file SD3 / Flux checkpoint holds
        the transformer only (as BFL's and Stability's files do): its text encoders, tokenizers, VAE and
        scheduler come from the model's folder beside it (model_index.json), else from the family's own hub
        repo (contract/families.py FLOW_PARTS_REPOS), without its transformer weights."""
        if self.folder is not None:
            return self.folder
        here = self.source.path.parent
        if (here / "model_index.json").is_file():
            return here
        fam = self.model_family
        repo = families.flow_parts_repo(fam)
        return fetch_snapshot(
            repo, ["model_index.json", "scheduler/*", "tokenizer*/*", "text_encoder*/*", "vae/*",
                   "transformer/config.json"],
            f"the text encoders and VAE of {fam.title} ({self.source.path.name} holds its transformer only): "
            "hub model",
            f"put {self.source.path.name} in a folder beside its model's model_index.json and component "
            f"folders (a diffusers download of {repo}: {repo} is gated, so accept its licence on the hub and "
            "log in with `huggingface-cli login` first)")

    @cached_property
    def model_family(self) -> families.Family:
        """The model's family (contract/families.py: sd15, sd21-v, sdxl-turbo, lcm…) from the folder's
        model_index.json and configs (a hub id's name helps tell a turbo model), or a single file's keys;
        cheap: no weights read. A pipeline dfm cannot render is a RenderError naming it."""
        if self.folder is None:
            if self.source.path.suffix.lower() == ".safetensors" and flow_file_family(self.source.path) is not None:
                try:  # a transformer-only file: its keys tell the family (a Fill or Redux model is refused)
                    return families.file_family(self.source.path)
                except UserError as e:
                    raise RenderError(e.message, e.help) from None
            here = self.source.path.parent
            if (here / "model_index.json").is_file():  # the file's own config folder says
                return folder_model_family(here, self.source.describe(), self.source.path.stem)
            fam = file_key_family(self.source.path, self.allow_pickle)
            # unknown keys: SD 1.x's loader is tried, and config_skeleton then names the file in its error
            return fam or families.Family("sd15", "sd15", "keys of no known family", True)
        name = self.source.spec if self.source.kind == "hub" else None
        return folder_model_family(self.folder, self.source.describe(), name)

    @cached_property
    def family(self) -> str:
        """The base architecture the loader and the prompt encoder follow: "sd15", "sd21", "sdxl", or the
        rectified-flow "sd3" and "flux"."""
        return self.model_family.base

    @property
    def is_flow(self) -> bool:
        """A rectified-flow model (SD3/SD3.5, Flux): its `unet` is a transformer predicting a velocity, sampled
        by runtime/flow_matching.py; its prompts are CLIP and T5 embeddings (prompts.PromptEncoder)."""
        return self.family in FLOW_BASES

    @cached_property
    def _single_file_pipeline(self):
        """All components of a single-file checkpoint (diffusers converts the LDM keys in one pass)."""
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

        path = self.source.path
        family = self.family
        if self.model_family.name == "lcm" and self.model_family.guidance_embedded:
            # diffusers' single-file conversion has no mapping for the guidance projection: it would be dropped
            raise RenderError(f"{path.name} is a guidance-embedded LCM (a UNet with time_cond_proj_dim), which "
                              "diffusers cannot convert from a single file", "use the model's diffusers folder "
                              "(e.g. SimianLuo/LCM_Dreamshaper_v7), or an LCM-LoRA on an ordinary checkpoint")
        cls = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
        extra = {} if family == "sdxl" else {"safety_checker": None, "requires_safety_checker": False}
        with tempfile.TemporaryDirectory(prefix="dfm-config-") as tmp:
            # SD 1.x/2.x: detected again there, so that an unknown file is still an error naming it
            epsilon = self.model_family.name in ("sd21", "sd-turbo")  # SD 2.x told epsilon (contract/families.py)
            skeleton = config_skeleton(path, self.allow_pickle, Path(tmp), "sdxl" if family == "sdxl" else None,
                                       prediction="epsilon" if epsilon else None)
            try:
                pipe = cls.from_single_file(
                    str(path),
                    config=str(skeleton),
                    local_files_only=True,
                    feature_extractor=None,
                    torch_dtype=self.placement.dtype,
                    **extra,
                )
            except RenderError:
                raise
            except Exception as e:  # diffusers raises ValueError/KeyError/OSError/RuntimeError here
                raise RenderError(
                    f"could not load {path.name} with the config in {skeleton.name}: {first_line(e)}",
                    "check that the checkpoint is an SD 1.x/2.x or SDXL model and "
                    "that the config folder next to it describes it",
                ) from None
        return pipe

    # the parts `offload group` keeps in CPU memory (speedups.offload_in_groups): the denoiser, and a flow
    # model's T5 encoder (9.5 GB in bf16); set by the render's load stage (speedups.resolve_offload) before
    # anything loads
    offload = "off"

    @property
    def offloaded_parts(self) -> tuple[str, ...]:
        if self.offload != "group":
            return ()
        return {"flux": ("transformer", "text_encoder_2"), "sd3": ("transformer", "text_encoder_3")}.get(
            self.family, ("unet",))

    def _component(self, name: str):
        with quiet_loading():
            if self.source.kind == "file" and not self.is_flow:
                module = getattr(self._single_file_pipeline, name)
            else:
                module = self._load_from_folder(name)
        if isinstance(module, torch.nn.Module):
            module = module.eval().requires_grad_(False)
            if name not in self.offloaded_parts:  # offloaded: moved block by block once the LoRAs are in
                module = module.to(self.placement.device)
            if name == "vae" and module.dtype != self.vae_dtype:
                module = module.to(self.vae_dtype)
        return module

    def _load_from_folder(self, name: str):
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

        folder = self.parts_folder if self.is_flow else self.folder
        if not (folder / name).is_dir() and not (self.is_flow and name == "transformer" and self.folder is None):
            raise RenderError(f"{self.source.describe()} has no {name}/ folder", LOAD_HELP)
        common = {"local_files_only": True}
        safetensors = None if self.allow_pickle else True
        try:
            if self.is_flow:
                return self._load_flow_part(name, safetensors)
            if name in ("tokenizer", "tokenizer_2"):
                return CLIPTokenizer.from_pretrained(str(folder), subfolder=name, **common)
            if name in ("text_encoder", "text_encoder_2"):
                te_cls = CLIPTextModel if name == "text_encoder" else CLIPTextModelWithProjection
                return te_cls.from_pretrained(
                    str(folder),
                    subfolder=name,
                    dtype=self.placement.dtype,
                    use_safetensors=safetensors,
                    **common,
                )
            cls = {"unet": UNet2DConditionModel, "vae": AutoencoderKL}[name]
            return cls.from_pretrained(
                str(folder),
                subfolder=name,
                torch_dtype=self.vae_dtype if name == "vae" else self.placement.dtype,
                use_safetensors=safetensors,
                **common,
            )
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            pickle_only = (
                not self.allow_pickle
                and not any((folder / name).glob("*.safetensors"))
                and any((folder / name).glob("*.bin"))
            )
            help = (
                (
                    "its weights are pickle files (.bin): pass --allow-pickle if you trust them, "
                    "or convert them to .safetensors"
                )
                if pickle_only
                else LOAD_HELP
            )
            raise RenderError(
                f"could not load the {name} of {self.source.describe()}: {first_line(e)}", help
            ) from None

    def _load_flow_part(self, name: str, safetensors: bool | None):
        """One component of an SD3 or Flux folder, each class named here (never taken from model_index.json)."""
        from diffusers import AutoencoderKL, FluxTransformer2DModel, SD3Transformer2DModel
        from transformers import (
            CLIPTextModel,
            CLIPTextModelWithProjection,
            CLIPTokenizer,
            T5EncoderModel,
            T5TokenizerFast,
        )

        folder, sd3 = str(self.parts_folder), self.family == "sd3"
        common = {"local_files_only": True}
        t5_tok, t5_enc = ("tokenizer_3", "text_encoder_3") if sd3 else ("tokenizer_2", "text_encoder_2")
        if name == t5_tok:
            return T5TokenizerFast.from_pretrained(folder, subfolder=name, **common)
        if name in ("tokenizer", "tokenizer_2"):
            return CLIPTokenizer.from_pretrained(folder, subfolder=name, **common)
        weights = {"use_safetensors": safetensors, **common}
        if name == t5_enc:
            return T5EncoderModel.from_pretrained(folder, subfolder=name, dtype=self.placement.dtype, **weights)
        if name in ("text_encoder", "text_encoder_2"):
            cls = CLIPTextModelWithProjection if sd3 else CLIPTextModel
            return cls.from_pretrained(folder, subfolder=name, dtype=self.placement.dtype, **weights)
        cls = {"transformer": SD3Transformer2DModel if sd3 else FluxTransformer2DModel, "vae": AutoencoderKL}[name]
        if name == "transformer" and self.folder is None:
            # a single file, in diffusers' layout or the original one (BFL's, Stability's: diffusers converts
            # it), configured by the parts folder's transformer/config.json
            return cls.from_single_file(str(self.source.path), config=folder, subfolder=name,
                                        torch_dtype=self.placement.dtype, **common)
        return cls.from_pretrained(folder, subfolder=name, torch_dtype=self.placement.dtype, **weights)

    @cached_property
    def vae_dtype(self) -> torch.dtype:
        """SDXL's VAE overflows in float16 (NaN/black frames): it is kept in float32 when its config asks
        for that (`force_upcast`, true for SDXL's own VAE). An fp16-fixed VAE (madebyollin/sdxl-vae-fp16-fix,
        whose config sets force_upcast false) runs in the placement's dtype. SD 1.x/2.x: the placement's."""
        dtype = self.placement.dtype
        if self.family != "sdxl" or dtype != torch.float16:
            return dtype
        folder = self.folder or self.source.path.parent  # a single file: its config folder, if any
        try:
            cfg = json.loads((folder / "vae" / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return torch.float32  # the shipped skeleton's (SDXL's own VAE): force_upcast
        return torch.float32 if cfg.get("force_upcast", True) else dtype

    @cached_property
    def tokenizer(self):
        return self._checked_tokenizer("tokenizer", self.text_encoder_config)

    @cached_property
    def tokenizer_2(self):
        if self.family == "flux":
            return self.t5_tokenizer
        return self._checked_tokenizer("tokenizer_2", self.text_encoder_2.config)

    @cached_property
    def t5_tokenizer(self):
        """The T5 tokenizer of a flow model (SD3's tokenizer_3, Flux's tokenizer_2); None for SD3 without one."""
        name = "tokenizer_3" if self.family == "sd3" else "tokenizer_2"
        if self.family == "sd3" and not (self.parts_folder / name).is_dir():
            return None
        return self._component(name)

    @cached_property
    def t5_encoder(self):
        """The T5 encoder of a flow model (SD3's text_encoder_3, Flux's text_encoder_2); None for an SD3 folder
        without one (diffusers then gives zeros for the T5 tokens)."""
        if self.family == "flux":
            return self.text_encoder_2
        if not (self.parts_folder / "text_encoder_3").is_dir():
            return None
        return self._component("text_encoder_3")

    @property
    def t5_max_length(self) -> int:
        """How many T5 tokens a prompt is read as (padded or cut to), diffusers' default for the family."""
        return T5_MAX_LENGTH.get(self.model_family.name, 512 if self.family == "flux" else 256)

    @cached_property
    def text_encoder_2(self):
        return self._component("text_encoder_2")

    def _checked_tokenizer(self, name: str, encoder_config):
        tok = self._component(name)
        vocab = int(getattr(encoder_config, "vocab_size", 0) or 0)
        # transformers returns a 2-token tokenizer instead of raising when a hub tokenizer is missing
        if len(tok) < 3 or (vocab and len(tok) < vocab // 2):
            raise RenderError(
                f"the tokenizer of {self.source.describe()} is broken: {len(tok)} tokens for a "
                f"text encoder of {vocab}",
                f"restore its tokenizer/ files, or {LOAD_HELP}",
            )
        if tok.model_max_length > 1000:  # unset in the config: SD's text encoder takes 77 tokens
            tok.model_max_length = 77
        return tok

    @cached_property
    def text_encoder_config(self):
        if self.source.kind == "file":
            return self.text_encoder.config
        from transformers import CLIPTextConfig

        self.check_folder()  # CLIPTextConfig answers a missing subfolder with a default config
        try:
            return CLIPTextConfig.from_pretrained(
                str(self.folder), subfolder="text_encoder", local_files_only=True
            )
        except (OSError, ValueError) as e:
            raise RenderError(
                f"could not read the text encoder config of {self.source.describe()}: {first_line(e)}",
                LOAD_HELP,
            ) from None

    @cached_property
    def text_encoder(self):
        return self._component("text_encoder")

    @cached_property
    def unet(self):
        """The denoiser: the UNet, or a flow model's transformer (what speed-ups and call counts act on)."""
        return self._component("transformer" if self.is_flow else "unet")

    @cached_property
    def vae(self):
        return self._component("vae")

    @cached_property
    def scheduler_config(self) -> dict:
        if self.source.kind == "file" and not self.is_flow:
            return dict(self._single_file_pipeline.scheduler.config)
        path = (self.parts_folder if self.is_flow else self.folder) / "scheduler" / "scheduler_config.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise RenderError(f"could not read {path}: {first_line(e)}", LOAD_HELP) from None

    @property
    def latent_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        """Channels of the latents the sampler starts from (SD: the UNet's 4; SD3/Flux: the VAE's 16)."""
        if self.is_flow:
            return int(self.vae.config.latent_channels)
        return int(self.unet.config.in_channels)

    # -- rectified flow (SD3, Flux) --

    @property
    def patch_size(self) -> int:
        """Latent pixels per image token side: SD3's transformer patch size, Flux's 2x2 packing."""
        return int(self.unet.config.patch_size) if self.family == "sd3" else 2

    def flow_schedule(self, steps: int, latent_height: int, latent_width: int) -> tuple[float | None, object]:
        """(mu, sigmas) of a flow model's schedule for a frame of this latent size, as its diffusers pipelines
        set them: the dynamic shift where the scheduler has one (SD3's pipelines default max_shift to 1.16,
        Flux's to 1.15), and Flux's evenly spaced sigmas (SD3: the scheduler's own spacing)."""
        from .flow_matching import flow_mu, flux_sigmas

        mu = flow_mu(self.scheduler_config, latent_height, latent_width, patch_size=self.patch_size,
                     default_max_shift=1.16 if self.family == "sd3" else 1.15)
        return mu, (flux_sigmas(int(steps)) if self.family == "flux" else None)

    @cached_property
    def _velocity_fn(self):
        from .flow_matching import flux_velocity, sd3_velocity

        return sd3_velocity(self.unet) if self.family == "sd3" else flux_velocity(self.unet)

    @torch.no_grad()
    def velocity(self, latents: Tensor, t: Tensor, cond, guidance: float | None = None, control=None,
                 context: Tensor | None = None) -> Tensor:
        """A flow model's velocity for unpacked latents (B, C, H, W) (flow_matching.VelocityFn); counted as a
        UNet call. `guidance`: Flux-dev's embedded scale; `control`: a step's Flux ControlNets (FluxControlFn);
        `context`: Flux.1 Kontext's context image latents."""
        self.unet_calls += 1
        if context is not None:
            return self._velocity_fn(latents, t, cond, guidance, control, context)
        return self._velocity_fn(latents, t, cond, guidance, control)

    def pooled_dim(self) -> int:
        """Width of a flow model's pooled text vector (SD3: both CLIP projections; Flux: CLIP-L's width)."""
        return int(self.unet.config.pooled_projection_dim)

    def flow_cond(self, packed: Tensor):
        """A flow_matching.FlowCond from embeddings as prompts.PromptEncoder packs them: the token sequence,
        then one last row holding the pooled vector (its first `pooled_dim` features)."""
        from .flow_matching import FlowCond

        return FlowCond(packed[:, :-1], packed[:, -1, : self.pooled_dim()])

    # -- running --

    @torch.no_grad()
    def encode_text(self, text: str) -> Tensor:
        """CLIP hidden states (1, 77, D) of one prompt; long prompts are cut at the tokenizer's limit."""
        ids = self.tokenizer(
            text,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.placement.device)
        self.text_encoder_calls += 1
        return self.text_encoder(ids)[0].float()

    @property
    def guidance_embedded(self) -> bool:
        """True for a UNet that takes the guidance scale as an input (`time_cond_proj_dim`, a guidance-
        distilled LCM): it runs one conditional pass per step and no unconditional one, and `eps` feeds
        it the scale set by `set_guidance_scale`."""
        return bool(getattr(self.unet.config, "time_cond_proj_dim", None))

    def set_guidance_scale(self, cfg_scale: float) -> None:
        """The cfg_scale `eps` embeds for a guidance-embedded UNet (set per frame, from the row); other
        UNets ignore it (their guidance is the sampler's classifier-free combination)."""
        self.guidance_scale = float(cfg_scale)

    def guidance_condition(self, batch: int, device: torch.device) -> Tensor:
        """`timestep_cond` of a guidance-embedded UNet: the embedding of w = cfg_scale - 1 (diffusers'
        LCM pipelines use the Imagen/diffusers CFG convention, the LCM paper's w is one less), for `batch`
        latents. Cached per (scale, batch): it changes only when the row's cfg_scale does."""
        key = (self.guidance_scale, batch, str(device))
        cached = getattr(self, "_guidance_cond", None)
        if cached is None or cached[0] != key:
            dim = int(self.unet.config.time_cond_proj_dim)
            w = torch.full((batch,), self.guidance_scale - 1.0)
            cached = (key, guidance_embedding(w, dim).to(device=device, dtype=self.placement.dtype))
            self._guidance_cond = cached
        return cached[1]

    @torch.no_grad()
    def eps(self, latents: Tensor, t: Tensor, embeddings: Tensor, residuals: Residuals | None = None) -> Tensor:
        """The UNet's prediction. For SDXL `embeddings` carries the pooled embedding as its last row
        (`prompts.PromptEncoder`), split off here with the time ids for the frame's size. A guidance-
        embedded UNet also gets the embedded guidance scale (`guidance_condition`). `residuals` are the
        ControlNet units' sum for this call (runtime/controlnet.py), added to the UNet's skip connections."""
        self.unet_calls += 1
        x, hidden, kw = self.unet_inputs(latents, embeddings)
        if self.guidance_embedded:
            kw["timestep_cond"] = self.guidance_condition(latents.shape[0], latents.device)
        if residuals is not None:
            kw["down_block_additional_residuals"] = residuals.down
            kw["mid_block_additional_residual"] = residuals.mid
        return self.unet(x, t, encoder_hidden_states=hidden, **kw).sample

    def unet_inputs(self, latents: Tensor, embeddings: Tensor) -> tuple[Tensor, Tensor, dict]:
        """(latents, hidden states, keyword arguments) as the UNet takes them, in the model's dtype: for SDXL
        the keywords hold `added_cond_kwargs` (pooled embedding, time ids). A ControlNet is called on these
        same inputs (runtime/controlnet.py)."""
        dtype = self.placement.dtype
        if self.family != "sdxl":
            return latents.to(dtype), embeddings.to(dtype), {}
        hidden, added = self.sdxl_conditioning(embeddings, latents.shape[-2:])
        return latents.to(dtype), hidden.to(dtype), {"added_cond_kwargs": {k: v.to(dtype) for k, v in added.items()}}

    def sdxl_conditioning(self, embeddings: Tensor, latent_hw) -> tuple[Tensor, dict[str, Tensor]]:
        """(hidden states, added_cond_kwargs) from packed SDXL embeddings (B, 77·k + 1, D): the pooled
        embedding of text encoder 2 and the time ids as diffusers' txt2img and img2img pipelines make them:
        original size = target size = the frame's (height, width), crop (0, 0)."""
        pooled_dim = int(self.text_encoder_2.config.projection_dim)
        hidden, pooled = embeddings[:, :-1], embeddings[:, -1, :pooled_dim]
        h, w = (int(n) * self.latent_scale for n in latent_hw)
        # made once per (size, batch), not per UNet call: a host-to-device copy waits for the queued GPU work
        key = (h, w, int(embeddings.shape[0]), embeddings.dtype, str(embeddings.device))
        cached = getattr(self, "_time_ids", None)
        if cached is None or cached[0] != key:
            time_ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=embeddings.dtype, device=embeddings.device)
            cached = (key, time_ids.repeat(key[2], 1))
            self._time_ids = cached
        return hidden, {"text_embeds": pooled, "time_ids": cached[1]}

    @torch.no_grad()
    def encode_image(self, frame: Tensor) -> Tensor:
        """Latents of a [0, 1] frame: the posterior mean (no random draw), times the VAE's scaling factor; a
        VAE with a shift factor (SD3's, Flux's) has it subtracted first, as their pipelines do."""
        x = (frame * 2 - 1).to(self.vae.dtype)
        shift = self.vae.config.get("shift_factor")
        if shift is None:
            return self.vae.encode(x).latent_dist.mode().float() * self.vae.config.scaling_factor
        return (self.vae.encode(x).latent_dist.mode().float() - shift) * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode_latents(self, latents: Tensor) -> Tensor:
        shift = self.vae.config.get("shift_factor")
        if shift is None:
            x = self.vae.decode((latents / self.vae.config.scaling_factor).to(self.vae.dtype)).sample
        else:
            x = self.vae.decode((latents / self.vae.config.scaling_factor + shift).to(self.vae.dtype)).sample
        return (x.float() / 2 + 0.5).clamp(0, 1)


def family_warnings(table, sd: StableDiffusion) -> list[str]:
    """An SDXL model below 768x768 (not SDXL-Turbo, trained at 512x512) warns, naming the size to set.

    A render whose model is not the scene's (`dfm render --model`) keeps the table compiled for the
    scene's model, whose family chose the defaults of what the scene leaves out (contract/families.py
    DEFAULTS: size, steps, cfg_scale, sampler). Warn, naming each, when the render's family would have
    chosen otherwise: the table is not recompiled behind the user's back (resume and incremental
    re-renders trust it), and `model "..."` in the scene gives the family's defaults."""
    s = table.settings
    fam = sd.model_family
    small = []
    if fam.base == "sdxl" and int(s.width) * int(s.height) < 768 * 768:
        trained = fam.defaults().get("size", (1024, 1024))
        if trained[0] * trained[1] >= 768 * 768:  # not SDXL-Turbo: trained at 512x512
            small = [f"SDXL renders at {s.width}x{s.height}, well below the 1024x1024 it was trained at: set `size "
                     "1024x1024` (or another ~1 megapixel size) in the scene, or leave `size` out: an SDXL model's "
                     "default is 1024x1024"]
    scene_model = str(s.model or "")
    if sd.source.spec == scene_model or (sd.source.path is not None and str(sd.source.path) == scene_model):
        return small  # the scene's own size: the compiler gives an SDXL scene without one 1024x1024
    try:
        scene = families.source_family(scene_model) if scene_model else None
    except UserError:
        scene = None
    if scene is not None and scene.name == fam.name and scene.base == fam.base:
        return small

    def shown(name: str, value) -> str:
        return f"{value[0]}x{value[1]}" if name == "size" else f"{value:g}" if isinstance(value, float) else str(value)

    def have(name: str):
        if name == "size":
            return (int(s.width), int(s.height))
        if name == "sampler":
            return str(s.sampler)
        col = table[name]
        return float(col[0]) if len(col) and (col == col[0]).all() else None  # a schedule: the scene set it

    differ = [f"{name} {shown(name, v)} (the table has {shown(name, have(name))})"
              for name, v in fam.defaults().items() if have(name) is not None and have(name) != v]
    gave = [n for n in (scene.defaults() if scene else {}) if n not in fam.defaults()]
    if not differ and not gave:
        return small
    if any(d.startswith("size ") for d in differ):
        small = []  # the size is in the warning below, as this family's default
    what = f"the scene's model {scene_model!r} ({scene.title})" if scene else "the scene's model"
    text = (f"the render's model is {fam.title} ({fam.why}), but the table was compiled for {what}: ")
    if differ:
        text += f"where the scene sets none, {fam.title}'s defaults are {', '.join(differ)}"
    if gave:
        text += ("; " if differ else "") + f"{', '.join(gave)} came from {scene.title}'s defaults"
    return [*small, text + f"; to use this model's defaults put `model \"{sd.source.spec}\"` in the scene, or set "
            "them there"]

