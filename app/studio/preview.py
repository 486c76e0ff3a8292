"""The studio's motion preview: the camera over the test card (runtime/preview.py, the renderer's motion
maths, no model), written as one small JPEG per frame so that the page's frame slider shows frame k exactly,
in step with the charts.

It is built in a subprocess (`python -m dfm.app.studio.preview SCENE FOLDER`): the preview of a scene with
a video source or a controlnet-aux preprocessor imports torch, which the studio process never does, and a
stale build (the scene was saved again) is stopped by killing it. It writes only into FOLDER, a temporary
folder the studio owns, never a user's file.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

MAX_WIDTH = 512  # preview frames are scaled down to this width: a slider needs no 4K frames
MAX_FRAMES = 3000  # a longer scene previews every k-th frame; the page shows the nearest one
INFO_FILE = "preview.json"
QUALITY = 82


# ---- the subprocess ---------------------------------------------------------------------------------------


def build(scene: Path, folder: Path) -> int:
    """Write the preview frames of `scene` into `folder`, then preview.json; 0, or 1 for a scene with errors."""
    import cv2

    from ...api import compile_result
    from ...runtime.preview import with_control_panels
    from ..console import read_source

    result = compile_result(read_source(str(scene)), str(scene), preview=True)
    if result.errors or result.table is None:
        return 1
    table = result.table
    n = len(table)
    stride = max(1, math.ceil(n / MAX_FRAMES))
    folder.mkdir(parents=True, exist_ok=True)
    size = None
    for i, frame in enumerate(with_control_panels(table)):
        if i % stride:
            continue
        h, w = frame.shape[:2]
        if w > MAX_WIDTH:
            frame = cv2.resize(frame, (MAX_WIDTH, max(1, round(h * MAX_WIDTH / w))), interpolation=cv2.INTER_AREA)
        size = frame.shape[1], frame.shape[0]
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
        if ok:
            (folder / f"{i:05d}.jpg").write_bytes(jpg.tobytes())
    info = {"frames": n, "stride": stride, "fps": float(table.settings.fps),
            "width": size[0] if size else 0, "height": size[1] if size else 0}
    (folder / INFO_FILE).write_text(json.dumps(info) + "\n", encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m dfm.app.studio.preview SCENE FOLDER", file=sys.stderr)
        return 2
    return build(Path(args[0]), Path(args[1]))


# ---- the studio's side ------------------------------------------------------------------------------------


class PreviewBuilder:
    """Builds the preview of `scene` into numbered folders under `base` (the studio's temporary folder), one
    build at a time: a new `rebuild()` stops the one running. `on_ready(info)` hears each finished build."""

    def __init__(self, scene: Path, base: Path, on_ready: Callable[[dict], None]) -> None:
        self.scene, self.base, self.on_ready = scene, base, on_ready
        self.generation = 0
        self.current: Path | None = None
        self.info: dict | None = None
        self.task: asyncio.Task | None = None

    def rebuild(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()  # its subprocess is killed: a newer save supersedes it
        self.generation += 1
        self.task = asyncio.get_running_loop().create_task(self._build(self.generation))

    async def _build(self, generation: int) -> None:
        folder = self.base / str(generation)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dfm.app.studio.preview", str(self.scene), str(folder),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            _, err = await proc.communicate()
        except asyncio.CancelledError:
            proc.kill()
            await proc.wait()
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if proc.returncode != 0 or generation != self.generation:
            shutil.rmtree(folder, ignore_errors=True)
            if proc.returncode not in (0, 1):  # 1: the scene has errors, which the page shows already
                self.on_ready({"error": err.decode("utf-8", "replace")[-2000:]})
            return
        old, self.current = self.current, folder
        self.info = {**json.loads((folder / INFO_FILE).read_text(encoding="utf-8")), "generation": generation}
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self.on_ready(self.info)

    def frame(self, k: int) -> Path | None:
        """The preview frame shown at frame `k` (the nearest built one before it), or None."""
        if self.current is None or self.info is None or not 0 <= k < self.info["frames"]:
            return None
        path = self.current / f"{k - k % self.info['stride']:05d}.jpg"
        return path if path.is_file() else None

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing: nothing to report to
                pass


if __name__ == "__main__":
    sys.exit(main())
