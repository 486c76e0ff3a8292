"""Writes examples/music_video.mp3, the 8-second synthetic track examples/music_video.dfm follows.

120 bpm: a kick (a falling 55-110 Hz sine) on every beat, a hi-hat (a noise burst) between the beats,
and a bass note that changes every bar. Run it with the ffmpeg imageio-ffmpeg ships:

    .venv/bin/python examples/make_music_track.py
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np

SR, BPM, SECONDS = 22050, 120, 8.0


def track() -> np.ndarray:
    rng = np.random.default_rng(0)
    n = np.arange(int(SR * SECONDS))
    x = np.zeros(len(n))
    beat = 60.0 / BPM
    k = np.arange(int(0.25 * SR)) / SR
    kick = np.sin(2 * np.pi * (55 * k + 110 * (1 - np.exp(-k * 30)) / 30)) * np.exp(-k * 12)
    hat = rng.standard_normal(int(0.05 * SR)) * np.exp(-np.arange(int(0.05 * SR)) / (0.01 * SR))
    hat = np.diff(hat, prepend=0.0)  # brighter
    for b in np.arange(0, SECONDS, beat):
        i = int(b * SR)
        x[i:i + len(kick)] += 0.8 * kick[:len(x) - i]
        j = int((b + beat / 2) * SR)
        x[j:j + len(hat)] += 0.15 * hat[:max(0, len(x) - j)]
    notes = [55.0, 65.4, 49.0, 73.4]  # A1, C2, G1, D2: one a bar
    bar = (n / SR / (4 * beat)).astype(int) % len(notes)
    x += 0.15 * np.sin(2 * np.pi * np.array(notes)[bar] * n / SR)
    return (x / np.abs(x).max() * 0.9).astype("<f4")


def main() -> None:
    out = Path(__file__).resolve().parent / "music_video.mp3"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "f32le", "-ar", str(SR), "-ac", "1",
           "-i", "-", "-c:a", "libmp3lame", "-b:a", "64k", "-map_metadata", "-1", "-fflags", "+bitexact",
           str(out)]
    subprocess.run(cmd, input=track().tobytes(), check=True)
    print(out)


if __name__ == "__main__":
    main()
