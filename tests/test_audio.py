"""`audio`: per-frame features, `bpm auto`, `duration auto`, and their diagnostics, on audio made here."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from dfm.compiler import audio
from dfm.compiler.compile import compile_source
from dfm.dsl.formatter import format_source

SR = 22050
FPS = 15
START = 0.25  # the first click: every click then sits a quarter frame inside its frame at 15 fps


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "dfm" / "audio"


def click_track(bpm: float = 120.0, seconds: float = 8.0, start: float = START, silence: float = 0.0,
                tones: bool = False) -> np.ndarray:
    """Clicks (2 kHz, 9 ms) at `bpm` from `start`; then `silence` seconds of digital silence. With `tones`,
    a 100 Hz tone under the first half and a 6 kHz tone under the second."""
    x = np.zeros(int(SR * seconds))
    burst = np.exp(-np.arange(200) / 40) * np.sin(2 * np.pi * 2000 * np.arange(200) / SR)
    for t in np.arange(start, seconds - 0.01, 60.0 / bpm):
        i = int(round(t * SR))
        x[i:i + 200] += burst[:len(x) - i]
    if tones:
        half = len(x) // 2
        n = np.arange(len(x)) / SR
        x[:half] += 0.3 * np.sin(2 * np.pi * 100 * n[:half])
        x[half:] += 0.3 * np.sin(2 * np.pi * 6000 * n[half:])
    return np.concatenate([x, np.zeros(int(SR * silence))])


def write_wav(path: Path, x: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def encode(wav: Path, suffix: str) -> Path:
    import imageio_ffmpeg

    out = wav.with_suffix(suffix)
    codec = {".mp3": "libmp3lame", ".ogg": "libvorbis"}[suffix]
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(wav), "-c:a", codec,
                    str(out)], check=True)
    return out


def scene(track: str, *lines: str) -> str:
    body = "\n".join(lines) or "frames 90"
    return f'dfm 1\naudio "{track}"\nfps {FPS}\nprompt "a lighthouse"\n{body}\n'


def click_frames(frames: int, offset: float = 0.0, start: float = START) -> list[int]:
    times = np.arange(start, 60, 0.5) - offset
    return [int(np.floor(t * FPS)) for t in times if 0 <= t and int(np.floor(t * FPS)) < frames]


@pytest.fixture
def clicks(tmp_path) -> Path:
    return write_wav(tmp_path / "clicks.wav", click_track())


def test_bpm_auto_detects_the_click_tempo_and_says_so(clicks):
    r = compile_source(scene(clicks.name, "bpm auto", "frames 90"), base_dir=clicks.parent)
    assert r.ok, r.diagnostics
    assert abs(r.settings.bpm - 120) <= 1
    notes = [d for d in r.diagnostics if d.code == "DFM206"]
    assert len(notes) == 1 and not notes[0].is_error and notes[0].span.line == 5 and "bpm" in notes[0].message


@pytest.mark.parametrize("bpm", [90, 128, 150])
def test_tempo_detection_other_tempi(bpm):
    assert abs(audio.analyse(click_track(bpm)).tempo - bpm) <= 1


@pytest.mark.parametrize("bpm", [120, 128, 90])
@pytest.mark.parametrize(("seconds", "start"), [(4, 0.0), (6, 0.0), (4, 0.1), (8, START), (30, 0.37)])
def test_a_click_track_at_an_exact_tempo_reads_exactly(bpm, seconds, start):
    # beats on the hop grid drift against it (120 bpm = 43.07 hops): a 4 s track from 0 s used to read 120.18
    assert audio.analyse(click_track(bpm, seconds, start)).tempo == bpm


def test_bpm_auto_suggests_the_exact_tempo(tmp_path):
    track = write_wav(tmp_path / "clicks.wav", click_track(120, seconds=4, start=0.0))
    r = compile_source(scene(track.name, "bpm auto", "frames 60"), base_dir=tmp_path)
    assert r.ok and r.settings.bpm == 120
    (note,) = [d for d in r.diagnostics if d.code == "DFM206"]
    assert "120 bpm detected" in note.message and note.help == "write `bpm 120` to fix it"


def test_a_long_track_keeps_the_decimals_of_its_tempo():
    # the longer the track, the finer the tempo it can tell: a minute of 97.25 bpm is not rounded to 97
    assert audio.analyse(click_track(97.25, seconds=60, start=0.13)).tempo == 97.25
    # 8 s: only to a tenth (beats timed by the flux's centroid are steadier than by a parabola, which read 97.5)
    assert audio.analyse(click_track(97.25, seconds=8, start=0.13)).tempo == 97.3


def test_beat_is_one_on_the_frames_that_hold_clicks(clicks):
    r = compile_source(scene(clicks.name, "frames 90", "zoom 1 + 0.1*beat"), base_dir=clicks.parent)
    assert r.ok, r.diagnostics
    beat = r.table["audio_beat"]
    # clicks at 0.25 s + 0.5 s k: every 7.5 frames, on frame floor(time × fps) = 3, 11, 18, 26, …
    assert np.flatnonzero(beat).tolist() == click_frames(90) == [3, 11, 18, 26, 33, 41, 48, 56, 63, 71, 78, 86]
    np.testing.assert_allclose(r.table["zoom"], 1 + 0.1 * beat)
    phase = r.table["audio_beat_phase"]
    assert (phase[beat == 1] == 0).all() and (phase >= 0).all() and (phase < 1).all()
    assert phase[4] < phase[5] < phase[10]  # rising through the beat


def test_onset_peaks_on_the_click_frames(clicks):
    r = compile_source(scene(clicks.name, "frames 90"), base_dir=clicks.parent)
    onset = r.table["audio_onset"]
    assert onset.min() >= 0 and onset.max() <= 1
    on = click_frames(90)
    assert (onset[on] > 0.9).all()
    for f in on:
        assert onset[f] > onset[f - 1] and onset[f] > onset[f + 1]
    # elsewhere it is quiet (a click a quarter frame from a frame boundary spills a little across it)
    off = np.setdiff1d(np.arange(90), [g for f in on for g in (f - 1, f, f + 1)])
    assert (onset[off] < 0.1).all()


def test_rms_of_silence_is_zero_and_the_bands_follow_the_tones(tmp_path):
    track = write_wav(tmp_path / "mix.wav", click_track(seconds=4, tones=True, silence=2))
    r = compile_source(scene(track.name, "duration auto"), base_dir=tmp_path)
    assert r.ok, r.diagnostics
    t = r.table
    assert len(t) == 6 * FPS  # duration auto: the track's 6 s
    assert (t["audio_rms"][5 * FPS:] == 0).all() and (t["audio_onset"][5 * FPS:] == 0).all()
    assert (t["audio_rms"][:4 * FPS] > 0.1).all()
    first, second = slice(FPS // 2, int(1.5 * FPS)), slice(int(2.5 * FPS), int(3.5 * FPS))
    assert t["audio_low"][first].mean() > 0.5 > t["audio_low"][second].mean()
    assert t["audio_high"][second].mean() > 0.5 > t["audio_high"][first].mean()
    for name in audio.FEATURES:
        col = t[f"audio_{name}"]
        assert col.dtype == np.float64 and col.min() >= 0 and col.max() <= 1


@pytest.mark.parametrize("suffix", [".mp3", ".ogg"])
def test_compressed_formats_decode(clicks, suffix):
    track = encode(clicks, suffix)
    r = compile_source(scene(track.name, "bpm auto", "frames 60"), base_dir=clicks.parent)
    assert r.ok, r.diagnostics
    assert abs(r.settings.bpm - 120) <= 1
    assert np.flatnonzero(r.table["audio_beat"]).tolist() == click_frames(60)


def test_from_offsets_into_the_track(clicks):
    r = compile_source(scene(clicks.name, "duration auto").replace(f'"{clicks.name}"', f'"{clicks.name}" from 2s'),
                       base_dir=clicks.parent)
    assert r.ok, r.diagnostics
    assert r.settings.audio_offset == 2.0 and len(r.table) == 6 * FPS
    assert np.flatnonzero(r.table["audio_beat"]).tolist() == click_frames(6 * FPS, offset=2.0)


def test_the_analysis_is_cached_by_content(clicks, cache, monkeypatch):
    first = audio.load(clicks)
    assert len(list(cache.glob("*.npz"))) == 1
    monkeypatch.setattr(audio, "decode", lambda path: pytest.fail("decoded again"))
    copy = clicks.with_name("copy.wav")
    copy.write_bytes(clicks.read_bytes())  # same bytes, another name: the same cache entry
    again = audio.load(copy)
    assert again.tempo == first.tempo and np.array_equal(again.beats, first.beats)


def test_missing_and_undecodable_audio_are_diagnostics(tmp_path):
    r = compile_source(scene("nope.mp3"), base_dir=tmp_path)
    assert [(d.code, d.span.line, d.span.col) for d in r.errors] == [("DFM403", 2, 7)]
    (tmp_path / "junk.mp3").write_text("not audio")
    r = compile_source(scene("junk.mp3", "bpm auto", "frames 10"), base_dir=tmp_path)
    assert [d.code for d in r.errors] == ["DFM404"] and "cannot be decoded" in r.errors[0].message
    r = compile_source('dfm 1\nprompt "x"\naudio 3\nzoom 1 + onset\n')  # a broken statement: the rest is checked
    assert [d.code for d in r.errors] == ["DFM105"]


def test_audio_names_without_audio_are_errors_at_the_name():
    r = compile_source('dfm 1\nprompt "x"\nzoom 1 + 0.1*onset\nbpm auto\nduration auto\n')
    found = sorted((d.code, d.span.line, d.span.col) for d in r.errors)
    assert found == [("DFM205", 3, 14), ("DFM205", 4, 1), ("DFM205", 5, 1)]
    r = compile_source('dfm 1\nprompt "x"\naudio "a.wav"\ncadence 1 + beat\n')
    assert "DFM202" in [d.code for d in r.errors]  # per frame only: never a static setting


def test_audio_statements_format_as_written():
    text = 'dfm 1\naudio "song.mp3" from 12s\nbpm auto\nduration auto\nzoom 1 + 0.08*onset\n'
    out = format_source(text)
    assert format_source(out) == out
    assert [" ".join(line.split()) for line in out.splitlines()] == text.splitlines()


def test_check_of_a_scene_without_audio_imports_no_audio_code():
    code = ("import sys\nfrom dfm.api import check_text\n"
            "check_text('dfm 1\\nprompt \"x\"\\nzoom 1 + 0.1*sin(t)\\n', 'x.dfm')\n"
            "print('dfm.compiler.audio' in sys.modules, 'scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_video_carries_the_soundtrack_from_the_offset_cut_to_the_scene(clicks, tmp_path):
    import imageio_ffmpeg

    from dfm.runtime.encoder import Soundtrack, VideoEncoder

    track = Soundtrack.of(str(clicks), 1.0, 2 * FPS, FPS)
    assert track == Soundtrack(str(clicks), 1.0, 2.0)
    assert Soundtrack.of(None, 0.0, 30, FPS) is None
    video = VideoEncoder(tmp_path / "video.mp4", 64, 64, FPS, 23, soundtrack=track)
    for i in range(2 * FPS):
        video.add(np.full((64, 64, 3), i * 8, dtype=np.uint8))
    out = video.close()
    assert imageio_ffmpeg.count_frames_and_secs(str(out))[0] == 2 * FPS
    assert not list(tmp_path.glob(".*tmp*"))
    heard = audio.decode(out)
    assert abs(len(heard) / SR - 2.0) < 0.05  # cut to the scene's length
    beats = audio.analyse(heard).beats  # the clicks at 1.25 s, 1.75 s … of the track, from 1 s on
    np.testing.assert_allclose(beats[:3], [0.25, 0.75, 1.25], atol=0.03)


def test_preview_and_render_videos_carry_the_track_unless_no_audio(clicks, tiny_models, tmp_path):
    import imageio_ffmpeg

    from dfm.app.cli import main

    path = tmp_path / "music.dfm"
    path.write_text(scene(str(clicks), "frames 30", "size 64x64", "steps 2", "zoom 1 + 0.05*onset"))
    assert main(["preview", str(path), "-o", str(tmp_path / "p.mp4"), "--quiet"]) == 0
    heard = audio.decode(tmp_path / "p.mp4")
    assert abs(len(heard) / SR - 30 / FPS) < 0.05  # an audio stream of the scene's length
    assert main(["preview", str(path), "-o", str(tmp_path / "silent.mp4"), "--quiet", "--no-audio"]) == 0
    with pytest.raises(audio.AudioError):
        audio.decode(tmp_path / "silent.mp4")
    assert main(["render", str(path), "--out", str(tmp_path / "r"), "--model", str(tiny_models["folder"]),
                 "--device", "cpu", "--quiet"]) == 0
    video = tmp_path / "r" / "video.mp4"
    assert imageio_ffmpeg.count_frames_and_secs(str(video))[0] == 30
    assert abs(len(audio.decode(video)) / SR - 30 / FPS) < 0.05


def test_an_offset_given_twice_is_an_error(clicks):
    from dfm.api import check_text

    for body in (f'audio "{clicks}" from 1s\naudio_offset 2', f'audio_offset 2\naudio "{clicks}" from 1s'):
        d = [d for d in check_text(f'dfm 1\nprompt 0 "a"\n{body}\n') if d.is_error]
        assert [x.code for x in d] == ["DFM106"] and "audio_offset" in d[0].message


def test_a_track_longer_than_the_limit_is_refused_without_decoding_all_of_it(tmp_path):
    wav = write_wav(tmp_path / "long.wav", click_track(seconds=8.0))
    with pytest.raises(audio.AudioError, match="longer than"):
        audio.decode(wav, max_seconds=3.0)
    assert abs(len(audio.decode(wav, max_seconds=8.5)) / SR - 8.0) < 0.01


def test_the_analysis_in_chunks_is_the_analysis_in_one_piece(monkeypatch):
    x = click_track(seconds=6.0)
    whole = audio.analyse(x)
    monkeypatch.setattr(audio, "CHUNK_HOPS", 7)  # chunk edges everywhere, some mid-click
    chunked = audio.analyse(x)
    for name in ("onset", "rms", "low", "mid", "high", "beats"):
        assert np.array_equal(getattr(whole, name), getattr(chunked, name)), name
    assert whole.tempo == chunked.tempo


def test_beats_and_onsets_fall_on_the_frames_that_hold_the_clicks_the_first_included():
    # clicks at 0, 0.5 … 3.5 s, each on a frame's start at 12 fps: beats were on 6 … 36, 41 (the first missed,
    # the last a frame early) and onset peaked on two frames per click, the first a frame early
    a = audio.analyse(click_track(120, seconds=4, start=0.0))
    for fps in (12, 15):
        f = audio.frame_features(a, 4 * fps, fps)
        on = [int(np.floor(t * fps)) for t in np.arange(0, 3.6, 0.5)]
        assert np.flatnonzero(f["beat"]).tolist() == on
        assert np.flatnonzero(f["onset"] > 0.5).tolist() == on  # one frame per click
        assert (np.delete(f["onset"], on) < 0.05).all()


def test_on_a_noisy_track_onset_is_low_between_hits_and_no_beat_follows_the_last():
    rng = np.random.default_rng(0)
    x = 3 * click_track(120, seconds=8, start=0.25, silence=1.0)
    x = x + 0.1 * rng.standard_normal(len(x))  # noise throughout, 1 s of it past the last click
    a = audio.analyse(x)
    f = audio.frame_features(a, 9 * 12, 12)
    on = [int(np.floor(t * 12)) for t in np.arange(0.25, 7.99, 0.5)]
    assert np.flatnonzero(f["beat"]).tolist() == on
    between = np.delete(f["onset"], on)
    assert f["onset"][on].mean() > 0.6 and between.mean() < 0.2  # was 0.82 between the hits


@pytest.mark.parametrize("samples", [1, 300, 511])
def test_a_track_of_a_few_samples_is_read(tmp_path, samples):
    track = write_wav(tmp_path / "short.wav", np.full(samples, 0.3))  # under 3 hops: an IndexError
    r = compile_source(scene(track.name, "frames 10", "zoom 1 + 0.1*onset"), base_dir=tmp_path)
    assert r.ok, r.diagnostics


def test_a_path_that_is_not_a_regular_file_is_refused_before_it_is_read(tmp_path):
    os.mkfifo(tmp_path / "pipe.wav")  # reading it would wait for a writer forever
    for path in (tmp_path / "pipe.wav", Path("/dev/zero")):
        with pytest.raises(audio.AudioError, match="not a regular file"):
            audio.load(path)


def test_a_track_too_long_is_refused_from_its_header_before_it_is_read(tmp_path, monkeypatch):
    """A 3-hour track is refused by the length its header states: nothing is hashed or decoded (a 3-hour WAV
    cost 9 s and 1.3 GB to refuse). The WAV is 3 h at 8 samples/s: a small file with a long header length."""
    long_wav = tmp_path / "long.wav"
    with wave.open(str(long_wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8)
        w.writeframes(bytes(2 * 8 * 3 * 3600))
    assert audio.header_seconds(long_wav) == pytest.approx(3 * 3600)

    def never(*args, **kwargs):
        raise AssertionError("read the track")

    monkeypatch.setattr(audio, "decode", never)
    monkeypatch.setattr(audio, "file_hash", never)
    with pytest.raises(audio.AudioError, match=r"3\.00 h long, longer than 2 h"):
        audio.load(long_wav)
    mp3 = encode(write_wav(tmp_path / "short.wav", click_track(seconds=2)), ".mp3")
    assert audio.header_seconds(mp3) == pytest.approx(2.0, abs=0.1)  # a container's length, from ffmpeg
