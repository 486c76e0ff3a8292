"""The animation modes, defined once: what each one does, as named properties every stage asks.

The compiler (which parameters a mode uses, cadence, seeds), the dependency rule of an edit
(`changes.py`), the renderer (where a frame starts from, which models load), the scale-out code (which
scenes split across workers), `dfm diff` and the motion preview all read this table; none of them keeps a
list of mode names of its own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    name: str
    doc: str
    # each diffusion starts from the previous frame moved by a camera (2D/3D): a frame depends on the whole
    # past, the mode's motion schedules warp it, and cadence can tween between diffusions
    camera: bool = False
    uses_depth: bool = False  # the camera is warped by a depth map (3D)
    reads_video: bool = False  # each row img2imgs its own frame of an input video
    # rows are frames of an animation (a video is written; a prompt key at frame N means frame N); stills
    # make images, one row each, and no video
    animated: bool = True

    @property
    def from_noise(self) -> bool:
        """Each frame is a txt2img from noise: nothing is handed from one diffusion to the next."""
        return not self.camera and not self.reads_video

    @property
    def rows_independent(self) -> bool:
        """A row's frame depends on its own row only (any subset renders apart, on any worker), as far as
        the mode goes: cadence and blends are the table's to say."""
        return not self.camera

    @property
    def allows_cadence(self) -> bool:
        """Cadence diffuses every Nth frame and tweens between (elsewhere it is 1)."""
        return self.camera

    def cadence(self, setting: object) -> int:
        """The cadence a scene of this mode renders with: its `cadence` setting where the mode allows one,
        else 1 (video input diffuses every frame)."""
        return int(setting) if self.allows_cadence else 1

    @property
    def keeps_latents(self) -> bool:
        """The render keeps each diffusion's latents, so a restart at any frame can replay the frames before
        it instead of sampling them again (the modes where later frames start from earlier ones)."""
        return self.camera

    @property
    def seeded_by_schedule(self) -> bool:
        """The diffusions can follow a `seed_schedule` (Deforum's modes with a frame source)."""
        return self.camera or self.reads_video

    @property
    def rows_are_frames(self) -> bool:
        """Row N is frame N of the animation, so a key at frame N is about row N (stills and interpolation
        make rows of their own: per image, per step between prompts)."""
        return self.camera or self.reads_video

    @property
    def between_prompts(self) -> bool:
        """Rows are the steps between consecutive prompts (interpolation): their count follows the prompts."""
        return self.animated and not self.rows_are_frames

    @property
    def uses_strength(self) -> bool:
        """Diffusions are img2img of a source image with the row's strength."""
        return self.camera or self.reads_video


MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("none", "stills: txt2img images, one per row", animated=False),
    Mode("2d", "a 2D camera: each frame is the previous one rotated, zoomed and moved", camera=True),
    Mode("3d", "a 3D camera: each frame is the previous one warped by its depth map", camera=True, uses_depth=True),
    Mode("video", "video input: each frame img2imgs a frame of an input video", reads_video=True),
    Mode("interpolation", "prompt interpolation: txt2img from one noise, the prompts' embeddings blended"),
)}
NAMES: tuple[str, ...] = tuple(MODES)


def mode(name: object) -> Mode:
    """The mode called `name`; a KeyError for a name that is no mode (the compiler refuses those first)."""
    return MODES[str(name)]


def names_where(prop: str) -> frozenset[str]:
    """The names of the modes whose property `prop` is true: `names_where("camera")` -> {"2d", "3d"}."""
    return frozenset(m.name for m in MODES.values() if getattr(m, prop))


__all__ = ["MODES", "NAMES", "Mode", "mode", "names_where"]
