"""Audio analysis for `audio "song.mp3"`: decode, per-track features, tempo and beats, per-frame sampling.

Imported only by a scene that has an `audio` statement, so `dfm check` of any other scene never loads it.

- **Decoding** goes through the ffmpeg binary imageio-ffmpeg ships (`-f f32le -ac 1 -ar 22050`): mono
  float PCM at 22,050 Hz, any format that ffmpeg reads (wav, flac, mp3, ogg, m4a …).
- **Features** are computed on a grid of hops (`HOP` samples = 11.6 ms) from a short-time Fourier
  transform (`N_FFT` samples, Hann window, frames centred on the hop):
  `rms` (loudness of the samples around the hop), `onset` (spectral flux: the half-wave rectified rise of
  the log-compressed magnitude spectrum, summed over bins, less its moving median over a second),
  `low` / `mid` / `high` (the square root of the
  spectral power in 20–250 Hz, 250–4000 Hz and 4000 Hz up). Each is normalised **per track**: divided by
  its maximum over the whole file, so it lies in 0..1 and digital silence is 0.
- **Tempo**: the autocorrelation of the onset envelope, weighted towards 120 bpm (a log-normal prior, one
  octave wide), picks the beat period between 60 and 200 bpm; dynamic programming then places beats that
  fall on onsets while keeping that period (Ellis 2007, "Beat tracking by dynamic programming"); each beat
  is timed by the centroid of the flux around its peak, and the tempo is the least-squares slope of beat time against
  beat number. It is reported at the precision the analysis has (`readable_tempo`): the nearest whole,
  half, tenth or hundredth bpm within the fit's uncertainty (three standard errors) plus the hop grid's
  (the first and last beats each up to half a hop off), so an exact 120 bpm click track
  reads 120, not 120.18, while a long track keeps its decimals.
- **Cache**: the per-track analysis is stored by the sha256 of the file's bytes in
  `$XDG_CACHE_HOME/dfm/audio` (else `~/.cache/dfm/audio`), so a second `dfm check` decodes nothing.
- **Per frame** (`frame_features`): frame *i* covers the track time `[offset + i/fps, offset + (i+1)/fps)`.
  `onset` is the strongest onset peak timed in that window, else 0 (one frame per hit), `rms`, `low`, `mid`,
  `high` the mean;
  `beat` is 1 on the frame whose window holds a beat's time (at 120 bpm and 15 fps: every 7.5 frames, the
  beat at 0.5 s on frame 7, at 1 s on frame 15); `beat_phase` is 0 on a beat frame and rises through the
  beat to just under 1 (the frame's start time between the beat before it and the next). No beat comes
  before the first hit or after the last. Past the end of the track every feature is 0.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SR = 22050
N_FFT = 1024
HOP = 256
VERSION = 3  # of the analysis: part of the cache key (3: onset peaks, the flux above its moving median)
BANDS = {"low": (20.0, 250.0), "mid": (250.0, 4000.0), "high": (4000.0, SR / 2)}
FEATURES = ("onset", "rms", "beat", "beat_phase", "low", "mid", "high")
TEMPO_RANGE = (60.0, 200.0)
MAX_SECONDS = 2 * 3600  # the longest track read: its samples alone are 635 MB at SR
CHUNK_HOPS = 4096  # the analysis runs this many hops at a time, so its memory does not grow with the track
# the spectral flux of an onset rises while the sound enters the analysis window, before the sound itself:
# its centroid sits 10.2 to 14.1 ms early (measured on clicks at every phase of the hop grid), so onset
# and beat times are shifted by a little more than the most, and a hit on a frame's start stays on that frame
ONSET_LAG = 0.0145
FLOOR_SECONDS = 1.0  # the moving median subtracted from the spectral flux: a steady noise's flux is no onset


class AudioError(Exception):
    """A track that cannot be used: what is wrong and how to fix it."""

    def __init__(self, message: str, help: str = ""):
        super().__init__(message)
        self.message = message
        self.help = help


@dataclass(frozen=True)
class Analysis:
    """One track's features on the hop grid (each normalised to 0..1) and its beats."""

    duration: float  # seconds
    onset: np.ndarray
    rms: np.ndarray
    low: np.ndarray
    mid: np.ndarray
    high: np.ndarray
    beats: np.ndarray  # beat times, seconds
    tempo: float  # bpm, NaN when no tempo was found
    peaks: np.ndarray  # onset peak times, seconds
    peak_values: np.ndarray  # the onset at each peak (0..1)

    @property
    def hop_seconds(self) -> float:
        return HOP / SR


# ---- decoding ------------------------------------------------------------------------------------


_DURATION = re.compile(rb"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")


def header_seconds(path: str | os.PathLike) -> float | None:
    """The track's length as its header states it, read without decoding: a PCM WAV's own header, else the
    `Duration:` ffmpeg reads from the container (it stops after the header with no output asked). None
    where neither says."""
    try:
        with wave.open(str(path), "rb") as w:
            rate = w.getframerate()
            return w.getnframes() / rate if rate else None
    except (wave.Error, EOFError, OSError):
        pass  # not a PCM WAV: ask ffmpeg
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return None
    proc = subprocess.run([exe, "-nostdin", "-hide_banner", "-i", str(path)], capture_output=True, check=False)
    found = _DURATION.search(proc.stderr)
    if found is None:
        return None
    hours, minutes, seconds = found.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def check_length(path: str | os.PathLike, max_seconds: float = MAX_SECONDS) -> None:
    """AudioError for a track whose header says it is longer than `max_seconds`, before a byte is decoded (a
    3-hour WAV cost 9 s and 1.3 GB to refuse)."""
    seconds = header_seconds(path)
    if seconds is not None and seconds > max_seconds + 1:
        raise AudioError(f"`{Path(path).name}` is {seconds / 3600:.2f} h long, longer than {max_seconds / 3600:g} h, "
                         "the longest track dfm reads",
                         "trim it to the part the scene uses (`ffmpeg -ss START -t LENGTH`)")


def decode(path: str | os.PathLike, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """The track as mono float32 samples at SR; AudioError for one longer than `max_seconds` (ffmpeg stops
    decoding just past it, so a 10-hour file costs no more than a 2-hour one)."""
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as e:
        raise AudioError(f"no ffmpeg to decode audio: {e}", "pip install imageio-ffmpeg") from None
    cmd = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path), "-vn", "-f", "f32le",
           "-ac", "1", "-ar", str(SR), "-t", str(max_seconds + 1), "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        why = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = why[-1] if why else f"ffmpeg exited with {proc.returncode}"
        raise AudioError(f"`{Path(path).name}` cannot be decoded as audio: {reason}",
                         "use a wav, flac, mp3, ogg or m4a file")
    samples = np.frombuffer(proc.stdout, dtype="<f4")
    if samples.size == 0:
        raise AudioError(f"`{Path(path).name}` holds no audio", "use a file with an audio stream")
    if samples.size > max_seconds * SR:
        raise AudioError(f"`{Path(path).name}` is longer than {max_seconds / 3600:g} h, the longest track dfm reads",
                         "trim it to the part the scene uses (`ffmpeg -ss START -t LENGTH`)")
    return samples


# ---- features ------------------------------------------------------------------------------------


def _hop_count(samples: int) -> int:
    """How many centred frames of N_FFT samples, one every HOP, a track of `samples` samples has."""
    return 1 + (samples + 2 * (N_FFT // 2) - N_FFT) // HOP


def _frames(x: np.ndarray, lo: int = 0, hi: int | None = None) -> np.ndarray:
    """Centred, overlapping frames lo..hi of N_FFT samples every HOP samples (zero-padded at both ends)."""
    hi = _hop_count(len(x)) if hi is None else hi
    first = lo * HOP - N_FFT // 2  # the sample frame lo starts at, in the unpadded track
    last = (hi - 1) * HOP - N_FFT // 2 + N_FFT
    seg = x[max(0, first):min(len(x), last)].astype(np.float64)
    pad = np.pad(seg, (max(0, -first), max(0, last - len(x))))
    return np.lib.stride_tricks.as_strided(pad, shape=(hi - lo, N_FFT), strides=(pad.strides[0] * HOP,
                                                                               pad.strides[0]))


def _normalised(x: np.ndarray) -> np.ndarray:
    peak = float(x.max()) if x.size else 0.0
    return (x / peak if peak > 0 else np.zeros_like(x)).astype(np.float64)


def analyse(samples: np.ndarray) -> Analysis:
    """Every feature of a track on the hop grid, its beats and tempo (CHUNK_HOPS hops at a time)."""
    count = _hop_count(len(samples))
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / SR)
    masks = {name: (freqs >= lo) & (freqs < hi) if hi < SR / 2 else (freqs >= lo) for name, (lo, hi) in BANDS.items()}
    window = np.hanning(N_FFT)
    rms, flux = np.empty(count), np.zeros(count)
    bands = {name: np.empty(count) for name in BANDS}
    # the previous chunk's last log magnitude: the flux of a chunk's first hop needs it. Before the track is
    # silence, so a hit on its first sample is an onset (it was lost when hop 0 had no flux)
    before = np.zeros((1, N_FFT // 2 + 1))
    for lo in range(0, count, CHUNK_HOPS):
        hi = min(count, lo + CHUNK_HOPS)
        frames = _frames(samples, lo, hi)
        rms[lo:hi] = np.sqrt(np.mean(frames**2, axis=1))
        mag = np.abs(np.fft.rfft(frames * window, axis=1))
        power = mag**2
        for name, mask in masks.items():
            bands[name][lo:hi] = np.sqrt(power[:, mask].sum(axis=1))
        logmag = np.log1p(1000.0 * mag)
        flux[lo:hi] = np.maximum(logmag - np.vstack([before, logmag[:-1]]), 0.0).sum(axis=1)
        before = logmag[-1:]
    if count > 1:  # a track that starts loud rises from silence over every bin: an onset, no louder than the rest
        flux[0] = min(flux[0], float(flux[1:].max()))
    # a steady noise has a flux of its own, as high as a hit's on a noisy mix: only the flux above it counts
    flux = np.maximum(flux - _moving_median(flux, int(round(FLOOR_SECONDS * SR / HOP))), 0.0)
    # a click's rise is split between neighbouring hops by where it falls: summed over three hops (35 ms)
    # its peak no longer depends on that (not np.convolve "same": on a track under 3 hops it returns 3 values)
    padded = np.pad(flux, 1)
    onset = _normalised(padded[:-2] + padded[1:-1] + padded[2:])
    peaks = _peaks(onset)
    beats, tempo = track_beats(onset, flux=flux)
    return Analysis(duration=len(samples) / SR, onset=onset, rms=_normalised(rms), low=_normalised(bands["low"]),
                    mid=_normalised(bands["mid"]), high=_normalised(bands["high"]), beats=beats, tempo=tempo,
                    peaks=np.array([_time(flux, int(h)) for h in peaks]), peak_values=onset[peaks])


def _moving_median(x: np.ndarray, width: int, step: int = 8) -> np.ndarray:
    """The median of x over `width` hops around each hop, taken every `step` hops and interpolated between
    (a median every hop of a 2-hour track would cost seconds)."""
    if len(x) < 2:
        return np.zeros_like(x)
    half = width // 2
    padded = np.pad(x, half, mode="reflect" if len(x) > half else "symmetric")  # "edge" would repeat a first hit
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)[::step]
    at = np.arange(0, len(x), step)[:len(windows)]
    return np.interp(np.arange(len(x)), at, np.median(windows, axis=1))


def _peaks(env: np.ndarray) -> np.ndarray:
    """The hops where env has a local maximum above 0 (the first hop of a flat top)."""
    if len(env) == 0:
        return np.zeros(0, dtype=np.int64)
    left = np.concatenate([[-1.0], env[:-1]])
    right = np.concatenate([env[1:], [-1.0]])
    return np.flatnonzero((env > left) & (env >= right) & (env > 0))


def _time(flux: np.ndarray, h: int) -> float:
    """The time (s) of the onset that peaks at hop h: the centroid of the flux over two hops either side
    (steadier across the hop grid than a parabola through the smoothed peak), shifted by ONSET_LAG."""
    lo, hi = max(0, h - 2), min(len(flux), h + 3)
    w = flux[lo:hi]
    at = float((np.arange(lo, hi) * w).sum() / w.sum()) if w.sum() > 0 else float(h)
    return max(0.0, at * HOP / SR + ONSET_LAG)


def _period(onset: np.ndarray) -> float | None:
    """The beat period in hops (fractional) from the onset envelope's autocorrelation, or None."""
    # smoothed over a few hops, so that peaks a fraction of a hop apart still line up at the period's lag
    kernel = np.exp(-0.5 * (np.arange(-4, 5) / 1.5) ** 2)
    env = np.convolve(onset, kernel / kernel.sum(), mode="same")
    env = env - env.mean()
    if not np.any(env):
        return None
    n = len(env)
    spec = np.fft.rfft(env, 2 * n)
    ac = np.fft.irfft(spec * np.conj(spec))[:n]
    hop_s = HOP / SR
    lo = int(np.floor(60.0 / TEMPO_RANGE[1] / hop_s))
    hi = min(n - 2, int(np.ceil(60.0 / TEMPO_RANGE[0] / hop_s)))
    if hi <= lo + 1:
        return None
    lags = np.arange(lo, hi + 1)
    bpm = 60.0 / (lags * hop_s)
    weight = np.exp(-0.5 * (np.log2(bpm / 120.0)) ** 2)  # a log-normal prior, one octave wide
    score = ac[lo:hi + 1] * weight
    i = int(np.argmax(score))
    if score[i] <= 0:
        return None
    lag = float(lags[i])
    if 0 < i < len(score) - 1:  # parabolic refinement between hops
        a, b, c = score[i - 1], score[i], score[i + 1]
        d = a - 2 * b + c
        if d < 0:
            lag += 0.5 * (a - c) / d
    return lag


def track_beats(onset: np.ndarray, tightness: float = 100.0,
                flux: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Beat times (s) and tempo (bpm) by dynamic programming over the onset envelope (Ellis 2007); `flux`
    (the envelope before smoothing) times each beat, else the envelope itself."""
    period = _period(onset)
    if period is None:
        return np.zeros(0), float("nan")
    n = len(onset)
    score = onset.copy()
    back = np.full(n, -1, dtype=np.int64)
    lo, hi = max(1, int(round(period / 2))), int(round(2 * period))
    offsets = np.arange(lo, hi + 1)
    penalty = -tightness * np.log(offsets / period) ** 2
    for i in range(lo, n):
        prev = i - offsets
        ok = prev >= 0
        cand = score[prev[ok]] + penalty[ok]
        j = int(np.argmax(cand))
        if cand[j] > 0:
            score[i] += cand[j]
            back[i] = prev[ok][j]
    # end on the best-scoring hop in the last period that sits on an onset
    tail = np.arange(max(0, n - int(round(period))), n)
    strong = tail[onset[tail] >= 0.5 * onset.max()] if onset.max() > 0 else tail
    i = int(strong[np.argmax(score[strong])]) if strong.size else int(tail[np.argmax(score[tail])])
    path = []
    while i >= 0:
        path.append(i)
        i = int(back[i])
    hops = np.array(path[::-1], dtype=np.float64)
    hops = hops[onset[hops.astype(int)] > 0.1 * onset.max()] if onset.max() > 0 else hops
    hops = np.array([_snap(onset, int(h)) for h in hops], dtype=np.int64)
    if len(hops):
        # the path keeps its period through a break, but no beat comes before the first hit or after the last
        strength = onset[hops]
        strong = np.flatnonzero(strength >= 0.5 * float(np.median(strength)))
        hops = np.unique(hops[strong[0]:strong[-1] + 1])
    times = np.array([_time(onset if flux is None else flux, int(h)) for h in hops])
    if len(times) < 2:
        return times, readable_tempo(60.0 / (period * HOP / SR), 0.0, period * HOP / SR)
    k = np.arange(len(times))
    (slope, icept), residuals = np.polyfit(k, times, 1, full=True)[:2]
    if slope <= 0:
        return times, float("nan")
    sigma = float(np.sqrt(residuals[0] / (len(k) - 2))) if len(k) > 2 and len(residuals) else 0.0
    slope_error = sigma / float(np.sqrt(((k - k.mean()) ** 2).sum()))
    return times, readable_tempo(60.0 / slope, 60.0 * slope_error / slope**2, float(times[-1] - times[0]))


def readable_tempo(bpm: float, std_error: float, span: float) -> float:
    """`bpm` rounded to the coarsest of 1, 0.5, 0.1 and 0.01 bpm that stays within what the analysis can
    tell apart. Beats sit on a hop grid: a sub-hop bias that drifts with each beat's phase on the grid leaves
    no residual to measure (120 bpm = 43.07 hops: on a 4 s click track the fit reads 120.18 with a standard
    error of 0.0001), so the tolerance is 3 standard errors plus the first and last beats each half a hop
    off, across `span` seconds (measured on clicks: up to 0.66 hop in all)."""
    tolerance = 3.0 * std_error + bpm * (HOP / SR) / max(span, HOP / SR)
    for step in (1.0, 0.5, 0.1):
        nearest = round(bpm / step) * step
        if abs(nearest - bpm) <= tolerance:
            return float(round(nearest, 2))
    return float(round(bpm, 2))


def _snap(x: np.ndarray, i: int) -> int:
    """The hop of the largest x within two hops of i (the peak a beat on hop i sits on)."""
    lo = max(0, i - 2)
    return lo + int(np.argmax(x[lo:i + 3]))


# ---- cache ---------------------------------------------------------------------------------------


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dfm" / "audio"


def file_hash(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load(path: str | os.PathLike) -> Analysis:
    """The analysis of the track at `path`, from the cache when its bytes were analysed before."""
    try:
        # /dev/zero, /dev/urandom or a FIFO never end: hashing or decoding one would hang `dfm check`
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise AudioError(f"`{path}` is not a regular file", "write the path of an audio file")
        check_length(path)  # from the header: a track too long is refused before it is hashed or decoded
        digest = file_hash(path)
    except OSError as e:
        raise AudioError(f"`{path}` cannot be read: {e.strerror or e}", "write the path of an audio file") from None
    cached = cache_dir() / f"{digest}-v{VERSION}-{SR}.npz"
    try:
        with np.load(cached) as data:
            return Analysis(duration=float(data["duration"]), onset=data["onset"], rms=data["rms"],
                            low=data["low"], mid=data["mid"], high=data["high"], beats=data["beats"],
                            tempo=float(data["tempo"]), peaks=data["peaks"], peak_values=data["peak_values"])
    except (OSError, KeyError, ValueError):
        pass
    result = analyse(decode(path))
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, duration=result.duration, onset=result.onset, rms=result.rms, low=result.low,
                 mid=result.mid, high=result.high, beats=result.beats, tempo=result.tempo, peaks=result.peaks,
                 peak_values=result.peak_values)
        os.replace(tmp, cached)
    except OSError:
        pass  # a read-only cache only costs the next run a decode
    return result


# ---- per frame -----------------------------------------------------------------------------------


def frame_features(a: Analysis, frames: int, fps: float, offset: float = 0.0) -> dict[str, np.ndarray]:
    """Each feature per frame (float64, `frames` long), frame i covering [offset + i/fps, offset + (i+1)/fps)."""
    start = offset + np.arange(frames) / fps
    end = start + 1.0 / fps
    n = len(a.onset)
    hop_s = a.hop_seconds
    inside = start < a.duration

    def window(shift: float) -> tuple[np.ndarray, np.ndarray]:
        lo = np.clip(np.ceil((start - shift) / hop_s - 1e-9).astype(np.int64), 0, n)
        hi = np.clip(np.ceil((end - shift) / hop_s - 1e-9).astype(np.int64), 0, n)
        return lo, np.maximum(hi, np.minimum(lo + 1, n))  # a window shorter than a hop takes the next hop

    out: dict[str, np.ndarray] = {}
    for name in ("rms", "low", "mid", "high"):
        x = np.asarray(getattr(a, name), dtype=np.float64)
        lo, hi = window(0.0)
        col = np.zeros(frames)
        use = inside & (lo < n)
        if use.any():  # the mean over the window
            csum = np.concatenate([[0.0], np.cumsum(x)])
            col[use] = (csum[hi[use]] - csum[lo[use]]) / (hi[use] - lo[use])
        out[name] = col
    # onset: the strongest onset peak in the frame, so a hit lights one frame, not the two its rise spans
    onset = np.zeros(frames)
    at = _frame_of(np.asarray(a.peaks, dtype=np.float64), offset, fps, frames)
    np.maximum.at(onset, at[at >= 0], np.asarray(a.peak_values, dtype=np.float64)[at >= 0])
    out["onset"] = onset
    beats = np.asarray(a.beats, dtype=np.float64)
    beat = np.zeros(frames)
    held = _frame_of(beats, offset, fps, frames)
    beat[held[held >= 0]] = 1.0
    out["beat"] = beat
    out["beat_phase"] = _phase(beats, start, end)
    order = {k: out[k] for k in FEATURES}
    return order


def _frame_of(times: np.ndarray, offset: float, fps: float, frames: int) -> np.ndarray:
    """The frame whose span holds each time, -1 for one before the offset or past the last frame."""
    at = np.floor((times - offset) * fps + 1e-9).astype(np.int64)
    return np.where((times >= offset) & (at >= 0) & (at < frames), at, -1)


def _phase(beats: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """0 on a frame that holds a beat, then the frame start's fraction of the way to the next beat."""
    if len(beats) < 2:
        return np.zeros(len(start))
    first, last = beats[1] - beats[0], beats[-1] - beats[-2]
    # extend the beats one period before and a run of periods after, so every frame has neighbours
    span = max(0.0, float(end[-1] - beats[-1])) if len(end) else 0.0
    after = beats[-1] + last * np.arange(1, int(span / last) + 3)
    grid = np.concatenate([[beats[0] - first * k for k in range(int(max(0.0, beats[0] - start[0]) / first) + 2,
                                                                 0, -1)], beats, after])
    k = np.searchsorted(grid, end, side="left") - 1  # the last beat before the frame's end
    k = np.clip(k, 0, len(grid) - 2)
    prev, nxt = grid[k], grid[k + 1]
    return np.clip((start - prev) / (nxt - prev), 0.0, 1.0 - 1e-9)
