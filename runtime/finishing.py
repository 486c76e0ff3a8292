"""A render's finishing: the upscaled and the interpolated videos beside video.mp4, as the scene's output
settings ask (`upscale_model`, `interpolate`). Run by the render job once frames/, video.mp4 and
manifest.json are written; frames/ and video.mp4 are only read. Each finishing step resumes where a stopped
one left off (its frames in progress sit beside the video it writes) and replaces only its own earlier video."""

from __future__ import annotations

from pathlib import Path

from ..contract.table import FrameTable, Settings
from .clips import output_name
from .errors import RenderError
from .outdir import UPSCALED_VIDEO, dfm_manifest, owned_files


def finished_names(settings: Settings) -> list[str]:
    """The videos `finish_video` writes for these settings, by name, in the render folder."""
    names = []
    if settings.upscale_model:
        names.append(UPSCALED_VIDEO)
    if settings.interpolate != "none":
        base = Path(UPSCALED_VIDEO).stem if settings.interpolate_upscaled and settings.upscale_model else "video"
        names.append(f"{base}{output_name(int(settings.interpolate_times), bool(settings.interpolate_slow_mo))}.mp4")
    return names


def check_finished_names(settings: Settings, root: Path) -> None:
    """Refuse, before anything renders, a finished video's name held in the folder by a file dfm did not
    write (neither the last render's manifest nor dfm's record of its files lists it): finishing replaces
    only its own videos."""
    manifest = dfm_manifest(root) or {}
    listed = manifest.get("finished")
    ours = owned_files(root) | ({n for n in listed if isinstance(n, str)} if isinstance(listed, list) else set())
    for name in finished_names(settings):
        if (root / name).exists() and name not in ours:
            raise RenderError(f"{root / name} was not written by dfm, and this scene's finishing step "
                              f"({'upscale' if name == UPSCALED_VIDEO else 'interpolation'}) writes a video of that "
                              "name", "move or rename that file, or render into another folder (--out)")


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
