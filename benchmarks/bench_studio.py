"""`dfm studio`: start-up to the first answer, how fast a save and a landed frame reach the server's page
data, and how much a very long scene sends.

    .venv/bin/python benchmarks/bench_studio.py [--repeat 5] [--long-frames 200000]

- start-up: `dfm studio SCENE --port 0 --no-browser` as a subprocess, from its start to the first answer of
  `/api/scene` (the compiled scene, what the page draws first); best and median of `--repeat`, for a tiny
  scene and for examples/music_video.dfm (audio: features, beats and the decoded waveform);
- a save: the scene file rewritten, until the page's event stream says `scene` (watchfiles, then the compile
  off the event loop; the page then fetches /api/scene);
- a frame: a PNG written into the output folder, until the event stream's `output` names it as the newest;
- a long scene of `--long-frames` frames: the bytes of `/api/scene` (downsampled to at most 20,000 points
  per column: min/max per bucket) and the time to answer it.

Targets (issue 26): start-up < 1 s; a save on the page within 1 s. Nothing here fails on a slow machine;
it prints figures.
"""

from __future__ import annotations

import argparse
import json
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = 'dfm 1\nsize 64x64\nfps 12\nframes 48\nprompt 0 "a cat"\nprompt 24 "a dog"\nzoom 0:(1.0), 47:(1.1)\n'
LONG = 'dfm 1\nsize 64x64\nfps 30\nframes {frames}\nprompt 0 "a cat"\nzoom 0:(1.0 + 0.01*sin(t/40))\n'
STARTUP_TARGET_S = 1.0


class Studio:
    def __init__(self, scene: Path, cwd: Path) -> None:
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "dfm", "studio", str(scene), "--port", "0",
                                      "--no-browser", "--out", "out"], cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.proc.stdout], daemon=True).start()
        self.url = lines.get(timeout=60).split()[2]

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=60) as r:
            return r.read()

    def json(self, path: str):
        return json.loads(self.get(path))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def startup(scene: Path, cwd: Path, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        s = Studio(scene, cwd)
        s.get("api/scene")
        times.append(time.perf_counter() - s.t0)
        s.close()
    return times


def events(studio: Studio) -> queue.Queue:
    """The page's event stream (/api/events) as (event, data) pairs, read on a thread."""
    out: queue.Queue = queue.Queue()

    def read() -> None:
        event = None
        with urllib.request.urlopen(studio.url + "api/events", timeout=120) as r:
            for raw in r:
                line = raw.decode("utf-8").rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    out.put((event, json.loads(line[6:]), time.perf_counter()))

    threading.Thread(target=read, daemon=True).start()
    return out


def pushed(stream: queue.Queue, want, t0: float, timeout: float = 30.0) -> float:
    """Seconds from `t0` until an event for which want(event, data) holds is pushed to the page."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            event, data, at = stream.get(timeout=0.5)
        except queue.Empty:
            continue
        if want(event, data):
            return at - t0
    return float("inf")


def live(folder: Path, repeat: int) -> tuple[list[float], list[float]]:
    """Seconds from a save, and from a frame written, until the page is told (the event it reacts to)."""
    scene = folder / "live.dfm"
    scene.write_text(TINY, encoding="utf-8")
    s = Studio(scene, folder)
    saves, frames = [], []
    try:
        stream = events(s)
        (folder / "out" / "frames").mkdir(parents=True, exist_ok=True)
        time.sleep(1.5)  # the output folder's watcher starts
        for i in range(repeat):
            t0 = time.perf_counter()
            scene.write_text(TINY.replace('"a dog"', f'"a dog {i}"'), encoding="utf-8")
            saves.append(pushed(stream, lambda e, d: e == "scene", t0))
            time.sleep(0.3)
            t0 = time.perf_counter()
            (folder / "out" / "frames" / f"{i:05d}.png").write_bytes(b"\x89PNG\r\n\x1a\n")
            frames.append(pushed(stream, lambda e, d, i=i: e == "output" and (d["newest"] or {}).get("index") == i, t0))
    finally:
        s.close()
    return saves, frames


def long_scene(folder: Path, frames: int) -> tuple[int, float, float]:
    scene = folder / "long.dfm"
    scene.write_text(LONG.format(frames=frames), encoding="utf-8")
    s = Studio(scene, folder)
    try:
        t0 = time.perf_counter()
        size = len(s.get("api/scene"))
        seconds = time.perf_counter() - t0
        return size, seconds, time.perf_counter() - s.t0
    finally:
        s.close()


def show(label: str, times: list[float], target: float | None = None) -> None:
    best, median = min(times), statistics.median(times)
    mark = "" if target is None else ("  ok" if median < target else f"  over the {target:g} s target")
    print(f"{label:<44} best {best:6.3f} s   median {median:6.3f} s{mark}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--long-frames", type=int, default=200_000)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="dfm-bench-studio-"))
    try:
        (folder / "tiny.dfm").write_text(TINY, encoding="utf-8")
        for name in ("music_video.dfm", "music_video.mp3"):
            shutil.copy(ROOT / "examples" / name, folder / name)
        show("start-up to /api/scene, tiny scene", startup(Path("tiny.dfm"), folder, args.repeat), STARTUP_TARGET_S)
        show("start-up to /api/scene, music_video.dfm", startup(Path("music_video.dfm"), folder, args.repeat),
             STARTUP_TARGET_S)
        saves, frames = live(folder, args.repeat)
        show("a save until the page is told (event: scene)", saves, 1.0)
        show("a frame written until the page is told", frames, 1.0)
        size, seconds, total = long_scene(folder, args.long_frames)
        print(f"{args.long_frames:,}-frame scene: /api/scene {size / 1e6:.2f} MB in {seconds:.2f} s "
              f"(start-up and compile included: {total:.2f} s)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
