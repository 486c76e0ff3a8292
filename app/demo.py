"""`dfm demo` (what `make demo` runs): the newcomer's first render, whatever the machine.

Always, in seconds and without a model: check the demo scene, write its table (table.csv), the plot of
its schedules (plot.png) and the motion preview over a test card (preview.mp4). Then, if the model is
reachable, render into <out>/render/: on a GPU at once; on a CPU after saying how much work it is (the UNet
evaluations the table counts) and that the render times its first frames and then says how long the rest
takes (a measurement: a guess from the hardware was off by 30x), with a few seconds to interrupt (Ctrl-C; a
render interrupted later resumes where it stopped). With no model reachable (HF_HUB_OFFLINE, not in the
Hugging Face cache, no local folder, or the hub not answering a short probe), it stops after the
preview and says in one line how to render for real. No step waits on the network for more than
`PROBE_TIMEOUT` seconds.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..contract import families
from .exit_codes import EXIT_ERRORS, EXIT_OK

DEMO_SCENE = Path(__file__).resolve().parent.parent / "examples" / "demo.dfm"
PROBE_TIMEOUT = 3.0  # seconds: one HEAD request to the hub, never the hub client's retries
COUNTDOWN = 5  # seconds to interrupt before a CPU render starts
# what the demo writes into --out; a folder holding anything else is the user's, and the demo refuses it
OUTPUTS = ("table.csv", "plot.png", "preview.mp4", "preview_strip.png", "render")


@dataclass(frozen=True)
class Reach:
    ok: bool
    why: str  # where the model is, or why it cannot be had


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true")


def reachable(spec: str, base_dir: Path) -> Reach:
    """Whether the model can be had now, decided in at most PROBE_TIMEOUT seconds: a local folder or
    file, a hub id in the local cache, or (online) a hub that answers a HEAD request for it."""
    raw = Path(os.path.expanduser(spec))
    path = raw if raw.is_absolute() else base_dir / raw
    if path.exists() or raw.exists():
        return Reach(True, f"the local model {spec}")
    if _cached_weights(spec):
        return Reach(True, f"{spec} in the local Hugging Face cache")
    if hub_offline():
        return Reach(False, f"{spec} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set")
    return _probe_hub(spec)


def _probe_hub(spec: str) -> Reach:
    """One HEAD request for `spec`, given up after PROBE_TIMEOUT seconds in all: urlopen's timeout bounds
    each socket operation but not the name lookup, so the request runs in a daemon thread."""
    answer: list[Reach] = []

    def probe() -> None:
        try:
            req = urllib.request.Request(f"https://huggingface.co/api/models/{spec}", method="HEAD")
            with urllib.request.urlopen(req, timeout=PROBE_TIMEOUT) as r:  # noqa: S310 - a fixed https URL
                if r.status < 400:
                    answer.append(Reach(True, f"{spec} from the Hugging Face hub (downloaded once, about 5 GB "
                                              "for SD-Turbo)"))
                    return
        except (urllib.error.URLError, OSError, ValueError) as e:
            answer.append(Reach(False, f"{spec} is not in the local Hugging Face cache and the hub did not "
                                       f"answer ({getattr(e, 'reason', e)})"))
            return
        answer.append(Reach(False, f"the hub has no model {spec}"))

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(PROBE_TIMEOUT)
    return answer[0] if answer else Reach(
        False, f"{spec} is not in the local Hugging Face cache and the hub did not answer in {PROBE_TIMEOUT:g} s")


def _cached_weights(spec: str) -> bool:
    snap = families.cached_snapshot(spec)
    return snap is not None and any((snap / "unet").glob("*.safetensors"))


def run_demo(args) -> int:
    """The `dfm demo` command: see the module's docstring. Returns the exit code."""
    from ..contract.files import write_atomic
    from ..runtime.preview import render_preview
    from .console import compile_file
    from .plot import plot_table

    scene = Path(args.file) if args.file else DEMO_SCENE
    if not scene.is_file():
        print(f"dfm demo: error: the demo scene {scene} does not exist\nhelp: pass a scene: dfm demo SCENE.dfm",
              file=sys.stderr)
        return EXIT_ERRORS
    result = compile_file(str(scene))
    if result is None:
        return EXIT_ERRORS
    table = result.table
    out = Path(args.out)
    others = sorted(p.name for p in out.iterdir() if p.name not in OUTPUTS) if out.is_dir() else []
    if others or (out.exists() and not out.is_dir()):
        print(f"dfm demo: error: {out} holds files the demo did not write ({', '.join(others[:3]) or out.name}); "
              "it writes table.csv, plot.png, preview.mp4 and preview_strip.png there, replacing any of those"
              "\nhelp: pass an empty or new folder: dfm demo --out NEW_DIR", file=sys.stderr)
        return EXIT_ERRORS
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "table.csv", table.to_csv())
    plot_table(table, out / "plot.png", None)
    render_preview(table, out / "preview.mp4", strip=out / "preview_strip.png")
    print(f"wrote {out / 'table.csv'}, {out / 'plot.png'}, {out / 'preview.mp4'} (the camera over a test card) and "
          f"{out / 'preview_strip.png'}", file=sys.stderr)
    model = args.model or str(table.settings.model)
    reach = reachable(model, scene.parent)
    if not reach.ok:
        print(f"no model to render with: {reach.why}. To render for real: download it once online "
              f"(`hf download {model}`, hf comes with dfm) and run `make demo` again, or pass a local model: "
              f"`dfm demo --model PATH` (a diffusers folder or a .safetensors file)")
        return EXIT_OK
    # the render's own folder (dfm render refuses a folder of other files: the table, plot and preview here)
    render = [str(scene), "--out", str(out / "render"), "--device", args.device]
    render += ["--model", args.model] if args.model else []
    render += ["--quiet"] if args.quiet else []
    import torch

    gpu = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    if not gpu:
        evals = int(table["unet_evals"].sum())
        print(f"no GPU: rendering {len(table)} frames ({evals} UNet evaluations) with {reach.why} on this CPU; "
              "the render times its first frames and then says how long the rest takes. Ctrl-C stops it at any "
              "frame, and the same command goes on from there", file=sys.stderr)
        if not args.yes:
            try:
                for left in range(COUNTDOWN, 0, -1):
                    print(f"\rstarting in {left} s; Ctrl-C to stop ", end="", file=sys.stderr, flush=True)
                    time.sleep(1)
                print(file=sys.stderr)
            except KeyboardInterrupt:
                print("\nstopped before rendering; the table, plot and preview are in " + str(out), file=sys.stderr)
                return EXIT_OK
    else:
        print(f"rendering with {reach.why}", file=sys.stderr)
    return _render(render)


def _render(argv: list[str]) -> int:
    """`dfm render ARGV...`, its errors printed as that command's (not as the demo's)."""
    from .commands import render
    from .dispatch import run_command

    return run_command(render.parse(argv))


__all__ = ["DEMO_SCENE", "Reach", "reachable", "run_demo"]
