"""A render's finishing: the upscaled and the interpolated videos beside video.mp4, as the scene's output
settings ask (`upscale_model`, `interpolate`). Run by the render job once frames/, video.mp4 and
manifest.json are written; frames/ and video.mp4 are only read. Each finishing step resumes where a stopped
one left off (its frames in progress sit beside the video it writes) and replaces only its own earlier video."""

from __future__ import annotations

from pathlib import Path

from ..contract.table import FrameTable, Settings
from .clips import output_name
from .outdir import UPSCALED_VIDEO


def finished_names(settings: Settings) -> dict[str, str]:
    """The videos `finish_video` writes for these settings, by name in the render folder: what writes each."""
    names = {}
    if settings.upscale_model:
        names[UPSCALED_VIDEO] = "finishing step (upscale)"
    if settings.interpolate != "none":
        base = Path(UPSCALED_VIDEO).stem if settings.interpolate_upscaled and settings.upscale_model else "video"
        times, slow_mo = int(settings.interpolate_times), bool(settings.interpolate_slow_mo)
        names[f"{base}{output_name(times, slow_mo)}.mp4"] = "finishing step (interpolation)"
    return names


def finish_video(table: FrameTable, root: Path, *, allow_pickle: bool = False, device: str = "auto") -> list[Path]:
    """The finished videos the table's settings ask for, written into the render folder `root`, in order:
    the upscaled one, then the interpolated one (of the upscaled video with `interpolate_upscaled`)."""
    s = table.settings
    made: list[Path] = []
    upscaled = None
    if s.upscale_model:
        from .upscale import finish_upscale

        upscaled = finish_upscale(root, Path(str(s.upscale_model)), s.upscale_scale, None, allow_pickle,
                                  device=device)
        made.append(upscaled)
    if s.interpolate != "none":
        from .interpolate import finish_interpolation, interpolate_clip, load_engine, output_name

        weights = Path(str(s.interpolate_weights)) if s.interpolate_weights else None
        times, slow_mo = int(s.interpolate_times), bool(s.interpolate_slow_mo)
        if s.interpolate_upscaled and upscaled is not None:
            from .clips import open_clip

            out = root / f"{upscaled.stem}{output_name(times, slow_mo)}.mp4"
            made.append(interpolate_clip(open_clip(upscaled), out, times=times, slow_mo=slow_mo, force=True,
                                         engine=load_engine(str(s.interpolate), weights, device)).path)
        else:
            made.append(finish_interpolation(root, times, str(s.interpolate), weights, slow_mo, device=device))
    return made


__all__ = ["finish_video"]
