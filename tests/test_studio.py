"""`dfm studio` without a browser: the scene's JSON and exact per-frame values equal the compiled table, a
scene with errors shows what `dfm check` prints, an edit reaches the server, only the soundtrack, the
output folder and the page's assets are served (traversal, absolute and encoded paths, links into hidden
folders: 404), a POST from
another site is refused, a port in use is a one-line error (exit 2), the studio never imports torch, the
output folder's state (frames, job.json progress and ETA, the finished video), the sweep grid of a
`dfm batch --vary` folder, bounded chart data for a very long scene, and a render started from the page
(one at a time however many POSTs arrive together). Some tests run the server in this process (aiohttp's
test client), to replace the render command or look at the event queues.

The studio runs as `python -m dfm studio FILE --port 0 --no-browser` (a real server on a free port);
tests/test_studio_browser.py drives the page in Chromium with the same helper.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import wave
import zlib
from pathlib import Path

import numpy as np
import pytest

from dfm.api import compile_result
from dfm.app.cli import main
from dfm.app.render_args import out_folder
from dfm.app.studio.files import plain_relative, safe_file
from dfm.app.studio.render_watch import output_state
from dfm.app.studio.renders import MAX_LINE, RenderRunner
from dfm.app.studio.scene import MAX_POINTS, load_scene, sample_positions, sampled, waveform
from dfm.app.studio.server import MAX_SUBSCRIBERS, Config, Studio, make_app
from dfm.app.studio.sweep import parse_label, sweep_grid
from dfm.scaleout.batch import parse_vary, plan

SCENE = """dfm 1
mode 2d
size 64x64
fps 12
frames 24
cadence 2
seed 5 iter
prompt 0 "a cat in a garden"
prompt 12 "a dog on a beach"
zoom 0:(1.0), 23:(1.1)
angle 0:(0), 12:(3), 23:(0)
strength 0.6
"""

def png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (200, 120, 40)) -> bytes:
    """A valid one-colour PNG (the studio only lists and serves frames; a browser must be able to show them)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PNG = png()


class StudioProcess:
    """`dfm studio SCENE --port 0 --no-browser ARGS` in a subprocess, its URL read from its first line."""

    def __init__(self, scene: Path, *args: str, cwd: Path | None = None, timeout: float = 30.0) -> None:
        started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "dfm", "studio", str(scene), "--port", "0",
                                      "--no-browser", *args], cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            first = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.close()
            raise AssertionError(f"dfm studio printed no address in {timeout} s: {self.proc.stderr.read()}") from None
        assert first.startswith("dfm studio: http://127.0.0.1:"), first
        self.url = first.split()[2].rstrip("/")
        self.get("/")
        self.startup_s = time.perf_counter() - started  # process start to the first HTTP answer

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def json(self, path: str):
        status, body = self.get(path)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)

    def raw(self, path: str, method: str = "GET", headers: dict | None = None) -> int:
        """The status of a request sent exactly as written (no client-side normalisation of `..`)."""
        host, port = self.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            conn.putrequest(method, path, skip_host=headers is not None and "Host" in headers)
            for k, v in (headers or {}).items():
                conn.putheader(k, v)
            conn.endheaders()
            return conn.getresponse().status
        finally:
            conn.close()

    def post(self, path: str) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + path, data=b"", method="POST", headers={"X-Dfm-Studio": "1"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def wait_for(condition, timeout: float = 20.0, step: float = 0.1):
    """condition()'s first truthy value, or an AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"not true after {timeout} s")


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("studio")
    (folder / "scene").mkdir()
    (folder / "scene" / "s.dfm").write_text(SCENE, encoding="utf-8")
    (folder / "secret.txt").write_text("not for the page", encoding="utf-8")
    (folder / "scene" / "link.txt").symlink_to(folder / "secret.txt")
    (folder / "scene" / ".hidden").write_text("dot file", encoding="utf-8")
    (folder / "out" / ".git").mkdir(parents=True)  # a link with a plain name into a hidden folder
    (folder / "out" / ".git" / "config").write_text("[remote] url = secret", encoding="utf-8")
    (folder / "out" / "notes").symlink_to(Path(".git") / "config")
    return folder


@pytest.fixture(scope="module")
def studio(scene_dir):
    s = StudioProcess(Path("scene/s.dfm"), "--out", "out", cwd=scene_dir)
    yield s
    assert s.close() == 0, s.proc.stderr.read()


def table():
    return compile_result(SCENE, "s.dfm").table


def test_the_scene_json_holds_the_tables_values(studio):
    scene, t = studio.json("/api/scene"), table()
    assert scene["ok"] and scene["frames"] == len(t) == 24 and scene["fps"] == 12.0
    assert scene["x"] == list(range(24))
    for name in ("zoom", "angle", "seed"):
        assert scene["series"][name] == t.columns[name].astype(float).tolist(), name
    assert [(b["start"], b["end"], b["text"]) for b in scene["prompts"]] == [
        (0, 11, "a cat in a garden"), (12, 23, "a dog on a beach")]
    assert scene["diffused"] == np.flatnonzero(t.columns["diffused"]).tolist()
    assert any("zoom" in g["columns"] for g in scene["groups"]) and scene["columns"] == list(t.columns)
    print(f"\nstudio startup to the first HTTP answer: {studio.startup_s:.2f} s")
    assert studio.startup_s < 5.0  # the machine is shared and noisy; benchmarks/bench_studio.py measures < 1 s


def test_frame_values_are_the_tables_row(studio):
    t = table()
    for k in (0, 7, 23):
        got = studio.json(f"/api/frame/{k}")
        assert got["frame"] == k
        for name, values in t.columns.items():
            v = values[k]
            want = v.item() if hasattr(v, "item") else v
            assert got["values"][name] == (str(want) if isinstance(want, str) else want), (k, name)
    for bad in ("24", "-1", "abc", "1e3", "99999999999", "3.0"):
        assert studio.raw(f"/api/frame/{bad}") == 404, bad


@pytest.mark.parametrize("path", [
    "/files/scene/../secret.txt", "/files/scene/..%2fsecret.txt", "/files/scene/%2e%2e/secret.txt",
    "/files/scene/%2e%2e%2fsecret.txt", "/files/scene/%252e%252e/secret.txt", "/files/scene//etc/passwd",
    "/files/scene/%2Fetc%2Fpasswd", "/files/scene/link.txt", "/files/scene/.hidden", "/files/scene/s.dfm%00",
    "/files/scene/..\\secret.txt", "/files/out/../scene/s.dfm", "/files/elsewhere/s.dfm", "/static/../s.dfm",
    "/static/%2e%2e/server.py", "/files/sweep/anything.png", "/files/out/..%2f..%2fetc/passwd",
    "/files/out/%2fetc%2fpasswd", "/files/out/notes", "/files/out/.git/config", "/files/out/..%2fscene/s.dfm",
    "/files/scene/s.dfm", "/files/audio/s.dfm",
])
def test_nothing_outside_the_served_folders_is_served(studio, path):
    assert studio.raw(path) == 404, path


def test_the_pages_assets_are_served(studio, scene_dir):
    for asset in ("/", "/static/studio.js", "/static/studio.css", "/static/vendor/uPlot.iife.min.js"):
        assert studio.get(asset)[0] == 200, asset
    assert plain_relative("frames/00001.png") and not plain_relative("/abs") and not plain_relative("a/../b")
    assert safe_file(scene_dir / "scene", "link.txt") is None and safe_file(scene_dir / "scene", "s.dfm")
    assert safe_file(scene_dir / "out", "notes") is None  # resolved into .git


def write_wav(path: Path, samples: np.ndarray, rate: int = 22050) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def test_of_the_scene_folder_only_the_soundtrack_is_served(tmp_path):
    write_wav(tmp_path / "track.wav", np.full(22050 * 2, 0.1))
    (tmp_path / "s.dfm").write_text(SCENE + 'audio "track.wav"\n', encoding="utf-8")
    (tmp_path / "other.txt").write_text("not for the page", encoding="utf-8")
    s = StudioProcess(Path("s.dfm"), "--out", "out", cwd=tmp_path)
    try:
        assert s.json("/api/scene")["audio_url"] == "track.wav"
        assert s.get("/files/audio/track.wav") == (200, (tmp_path / "track.wav").read_bytes())
        for path in ("/files/audio/s.dfm", "/files/audio/other.txt", "/files/scene/track.wav", "/files/scene/s.dfm"):
            assert s.raw(path) == 404, path
    finally:
        s.close()


def test_the_waveform_ends_with_the_scene(tmp_path):
    """A track longer than the scene: a spike after the scene's last frame is not drawn on it."""
    samples = np.full(22050 * 4, 0.1)  # the scene is 2 s (24 frames at 12 fps)
    samples[22050 * 3] = 1.0
    track = write_wav(tmp_path / "long.wav", samples)
    peaks = waveform(compile_result(SCENE + f'audio "{track}"\n', "s.dfm").table)
    assert peaks is not None and len(peaks) == 24
    assert peaks.min() > 0.9, peaks  # all frames alike: the spike would make them 0.1 against the last


def test_a_request_from_another_site_is_refused(studio):
    assert studio.raw("/api/render", "POST", {"Origin": "http://evil.example", "X-Dfm-Studio": "1"}) == 403
    assert studio.raw("/api/render", "POST", {"Content-Length": "0"}) == 403  # no page header: a plain form
    assert studio.raw("/api/scene", "GET", {"Host": "evil.example:80"}) == 403  # DNS rebinding


def test_a_scene_with_errors_shows_what_dfm_check_prints(scene_dir, capsys):
    bad = scene_dir / "scene" / "bad.dfm"
    bad.write_text(SCENE.replace("zoom 0:(1.0)", "zoom 0:(1,0)"), encoding="utf-8")
    s = StudioProcess(Path("scene/bad.dfm"), "--out", "out-bad", cwd=scene_dir)
    try:
        scene = s.json("/api/scene")
    finally:
        s.close()
    cwd = os.getcwd()
    os.chdir(scene_dir)
    try:
        assert main(["check", "scene/bad.dfm"]) == 1
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert not scene["ok"] and "error[DFM011]" in scene["diagnostics"]
    assert scene["diagnostics"] == out and scene["summary"] == "1 error, 0 warnings in 1 file"


def test_an_edit_reaches_the_page_and_an_error_replaces_the_charts(scene_dir):
    path = scene_dir / "scene" / "edit.dfm"
    path.write_text(SCENE, encoding="utf-8")
    s = StudioProcess(Path("scene/edit.dfm"), "--out", "out-edit", cwd=scene_dir)
    try:
        first = s.json("/api/scene")
        path.write_text(SCENE.replace("a dog on a beach", "a fox in the snow"), encoding="utf-8")
        edited = wait_for(lambda: (j := s.json("/api/scene"))["generation"] > first["generation"] and j, 10)
        assert [b["text"] for b in edited["prompts"]] == ["a cat in a garden", "a fox in the snow"]
        assert s.json("/api/frame/20")["values"]["prompt"] == "a fox in the snow"
        path.write_text(SCENE.replace("strength 0.6", "strength 1.6"), encoding="utf-8")
        broken = wait_for(lambda: not (j := s.json("/api/scene"))["ok"] and j, 10)
        assert "strength" in broken["diagnostics"] and "error" in broken["diagnostics"]
        assert s.raw("/api/frame/3") == 404  # no stale values for a scene that does not compile
    finally:
        assert s.close() == 0


def test_a_port_in_use_is_a_one_line_error(scene_dir):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        r = subprocess.run([sys.executable, "-m", "dfm", "studio", "scene/s.dfm", "--port", str(port), "--no-browser"],
                           cwd=scene_dir, capture_output=True, text=True, timeout=30)
    finally:
        taken.close()
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("dfm studio: error:") and str(port) in lines[0] and "--port 0" in lines[0]


PROBE = """
import asyncio, json, os, signal, sys, time, urllib.request
t0 = time.perf_counter()
from pathlib import Path
from dfm.app.studio.scene import load_scene
from dfm.app.studio.server import Config, bind, serve_async

async def run():
    scene, out = Path(sys.argv[1]), Path(sys.argv[2])
    ready = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_async(Config(scene, out), bind("127.0.0.1", 0), load_scene(scene),
                                           ready.set_result))
    url = await ready
    get = lambda p: json.loads(urllib.request.urlopen(url + p, timeout=30).read())
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, get, "api/scene")
    first = time.perf_counter() - t0
    await loop.run_in_executor(None, get, "api/frame/3")
    await loop.run_in_executor(None, get, "api/output")
    for _ in range(300):  # the preview is built in its own process
        info = await loop.run_in_executor(None, get, "api/preview")
        if info:
            break
        await asyncio.sleep(0.1)
    print(json.dumps({"torch": "torch" in sys.modules, "first_answer_s": first, "preview": info}))
    os.kill(os.getpid(), signal.SIGINT)
    await task

asyncio.run(run())
"""


def test_the_studio_never_imports_torch(scene_dir):
    r = subprocess.run([sys.executable, "-c", PROBE, "scene/s.dfm", "out-probe"], cwd=scene_dir,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"\nimport to the first answer of /api/scene: {got['first_answer_s']:.2f} s")
    assert got["torch"] is False
    assert got["preview"]["frames"] == 24 and got["preview"]["width"] == 64


def test_the_preview_frames_are_served(studio):
    info = wait_for(lambda: studio.json("/api/preview"), 60)
    status, body = studio.get(f"/api/preview/{info['frames'] - 1}.jpg")
    assert status == 200 and body[:2] == b"\xff\xd8"  # a JPEG
    assert studio.raw(f"/api/preview/{info['frames']}.jpg") == 404


def write_job(out: Path, **fields) -> None:
    (out / ".dfm-state").mkdir(parents=True, exist_ok=True)
    (out / ".dfm-state" / "job.json").write_text(json.dumps({"dfm_job": 1, **fields}), encoding="utf-8")


def test_the_output_folder_state(tmp_path):
    out = tmp_path / "out"
    assert output_state(out, 24)["exists"] is False and output_state(out, 24)["newest"] is None
    (out / "frames").mkdir(parents=True)
    for i in range(3):
        (out / "frames" / f"{i:05d}.png").write_bytes(PNG)
        os.utime(out / "frames" / f"{i:05d}.png", (1000.0 + i, 1000.0 + i))
    state = output_state(out, 24)  # no job file: the frames on disk against the table
    assert state["progress"]["done"] == 3 and state["progress"]["todo"] == 24 and state["status"] == "frames on disk"
    assert state["newest"]["file"] == "frames/00002.png" and [f["index"] for f in state["strip"]] == [0, 1, 2]
    write_job(out, total=24, todo=10, kept="frames 0–13 kept: the first change is the zoom at frame 14",
              resumed_at=None, started=999.0, pid=os.getpid())
    state = output_state(out, 24, now=1009.0)
    p = state["progress"]
    assert p["running"] and p["done"] == 3 and p["todo"] == 10 and state["status"] == "rendering"
    assert p["eta_s"] == pytest.approx(7 / (3 / 10.0)) and state["kept"].startswith("frames 0–13 kept")
    assert state["video"] is None
    (out / "video.mp4").write_bytes(b"\0" * 16)
    (out / "manifest.json").write_text("{}", encoding="utf-8")
    write_job(out, total=24, todo=10, kept=None, resumed_at=None, started=999.0, pid=os.getpid(), finished=1010.0)
    state = output_state(out, 24, now=2000.0)
    assert state["status"] == "finished" and state["video"]["file"] == "video.mp4"
    assert state["progress"]["eta_s"] is None
    write_job(out, total=24, todo=10, kept=None, resumed_at=None, started=999.0, pid=2**22 + 12345)
    assert output_state(out, 24)["status"] == "interrupted"  # a job file whose render is gone


def read_events(url: str, found: queue.Queue) -> None:
    """Each (event, data) of the studio's event stream into `found`, until the stream ends."""
    with urllib.request.urlopen(url + "/api/events", timeout=30) as r:
        event = None
        for raw in r:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                found.put((event, json.loads(line[6:])))


def test_a_frame_written_into_the_output_folder_is_pushed(studio, scene_dir):
    """The page hears of the frame on the event stream (/api/output reads the disk on every request)."""
    found: queue.Queue = queue.Queue()
    threading.Thread(target=read_events, args=(studio.url, found), daemon=True).start()
    assert found.get(timeout=10)[0] == "hello"
    out = scene_dir / "out" / "frames"
    out.mkdir(parents=True, exist_ok=True)
    (out / "00005.png").write_bytes(PNG)
    deadline = time.monotonic() + 10
    while True:
        event, data = found.get(timeout=max(0.1, deadline - time.monotonic()))
        if event == "output" and data["newest"] and data["newest"]["index"] == 5:
            break
    assert data["newest"]["file"] == "frames/00005.png" and data["frames_on_disk"] == 1
    assert studio.get("/files/out/frames/00005.png") == (200, PNG)


def test_only_a_change_of_the_scenes_text_recompiles(tmp_path):
    """Other files of the scene's folder (frames, an editor's swap file) and a save of the same text leave
    the scene as it was: no new generation, no preview rebuilt."""
    path = tmp_path / "s.dfm"
    path.write_text(SCENE, encoding="utf-8")
    s = StudioProcess(Path("s.dfm"), "--out", "outputs/s", cwd=tmp_path)
    try:
        first = s.json("/api/scene")["generation"]
        (tmp_path / ".s.dfm.swp").write_bytes(b"swap")
        (tmp_path / "outputs" / "s" / "frames").mkdir(parents=True)
        (tmp_path / "outputs" / "s" / "frames" / "00000.png").write_bytes(PNG)
        path.write_text(SCENE, encoding="utf-8")
        time.sleep(1.5)
        assert s.json("/api/scene")["generation"] == first
        path.write_text(SCENE.replace("strength 0.6", "strength 0.5"), encoding="utf-8")
        wait_for(lambda: s.json("/api/scene")["generation"] > first, 10)
    finally:
        assert s.close() == 0


def test_the_output_folder_is_the_one_dfm_render_picks(tmp_path):
    """Without --out: the scene's output_dir, followed across edits (and a start with errors); the render
    is then started without --out, so it picks the folder itself, exactly as `dfm render FILE`."""
    table = compile_result(SCENE + 'output_dir "renders/a"\n', "s.dfm").table
    plain = argparse.Namespace(out=None, file="scenes/s.dfm")
    assert out_folder(plain, table) == Path(table.settings.output_dir) and out_folder(plain, table).name == "a"
    assert out_folder(plain, None) == Path("outputs/s")
    assert out_folder(argparse.Namespace(out="x", file="s.dfm"), table) == Path("x")
    assert "--out" not in RenderRunner(Path("s.dfm"), None, lambda: None).command()
    assert "--out" in RenderRunner(Path("s.dfm"), Path("x"), lambda: None).command()
    path = tmp_path / "s.dfm"
    path.write_text(SCENE.replace("strength 0.6", "strength 1.6") + 'output_dir "first"\n', encoding="utf-8")
    s = StudioProcess(Path("s.dfm"), cwd=tmp_path)
    try:
        assert s.json("/api/output")["folder"] == str(tmp_path / "outputs" / "s")  # errors: no output_dir yet
        path.write_text(SCENE + 'output_dir "first"\n', encoding="utf-8")
        wait_for(lambda: s.json("/api/output")["folder"] == str(tmp_path / "first"), 10)
        path.write_text(SCENE + 'output_dir "second"\n', encoding="utf-8")
        wait_for(lambda: s.json("/api/output")["folder"] == str(tmp_path / "second"), 10)
        assert s.json("/api/scene")["out"] == str(tmp_path / "second")
    finally:
        assert s.close() == 0


def make_sweep(root: Path, with_summary: bool = True) -> list:
    """A `dfm batch s.dfm --vary seed=1,2 --vary strength=0.5,0.6 --vary cadence=1,2` layout, planned by
    scaleout/batch.py itself; frames 0..2 for the first variants, none for the last."""
    jobs = plan([("s.dfm", SCENE)], [parse_vary("seed=1,2"), parse_vary("strength=0.5,0.6"),
                                      parse_vary("cadence=1,2")], root).jobs
    for n, job in enumerate(jobs):
        (job.out_dir / "frames").mkdir(parents=True)
        for i in range(0 if job is jobs[-1] else 3 if n else 1):
            (job.out_dir / "frames" / f"{i:05d}.png").write_bytes(PNG)
    (jobs[0].out_dir / "video.mp4").write_bytes(b"\0" * 16)
    if with_summary:  # as scaleout/batch.py write_summary writes it
        scenes = [{"scene": "s.dfm", "variation": dict(j.values), "out": j.key, "status": "done", "attempts": 1}
                  for j in jobs]
        (root / "batch.json").write_text(json.dumps({"dfm_batch": 1, "started": "", "finished": "",
                                                     "scenes": scenes}), encoding="utf-8")
    return jobs


@pytest.mark.parametrize("with_summary", [True, False])
def test_the_sweep_grid_of_a_batch_folder(tmp_path, with_summary):
    jobs = make_sweep(tmp_path, with_summary)
    grid = sweep_grid(tmp_path, "s")
    assert [(a["name"], a["values"]) for a in grid["axes"]] == [
        ("seed", ["1", "2"]), ("strength", ["0.5", "0.6"]), ("cadence", ["1", "2"])]
    cells = {c["key"]: c for c in grid["cells"]}
    assert len(cells) == 8 and set(cells) == {j.key for j in jobs}
    first = cells["s/seed=1,strength=0.5,cadence=1"]
    assert first["values"] == {"seed": "1", "strength": "0.5", "cadence": "1"} and first["frames"] == [0]
    assert first["frame_prefix"] == "s/seed=1,strength=0.5,cadence=1/frames/" and first["video"]
    assert cells[jobs[-1].key]["frames"] == [] and cells[jobs[1].key]["frames"] == [0, 1, 2]
    assert parse_label("seed=3,strength=0.5") == {"seed": "3", "strength": "0.5"} and parse_label("frames") is None


def test_the_studio_serves_a_sweep_and_only_its_variants(scene_dir):
    root = scene_dir / "sweep"
    jobs = make_sweep(root)
    s = StudioProcess(Path("scene/s.dfm"), "--out", "out", "--sweep", "sweep", cwd=scene_dir)
    try:
        grid = s.json("/api/sweep")
        assert len(grid["cells"]) == 8 and grid["axes"][0]["name"] == "seed"
        key = jobs[1].key
        assert s.get(f"/files/sweep/{key}/frames/00002.png") == (200, PNG)
        assert s.raw("/files/sweep/batch.json") == 404 and s.raw(f"/files/sweep/{key}/../../batch.json") == 404
    finally:
        s.close()


def test_a_very_long_scene_sends_bounded_chart_data():
    n = 1_000_003
    values = np.zeros(n)
    values[777_777] = 5.0  # one spike: min/max buckets keep it
    values[12] = -3.0
    x, buckets = sample_positions(n)
    ys = sampled(values, buckets)
    assert len(x) == len(ys) <= MAX_POINTS and x[0] == 0 and x[-1] == n - 1 and x == sorted(x)
    assert max(ys) == 5.0 and min(ys) == -3.0


def in_process(scene: Path, tmp_path: Path, body):
    """body(studio, client) against a studio served in this process (aiohttp's test server, 127.0.0.1)."""
    from aiohttp.test_utils import TestClient, TestServer

    async def run():
        studio = Studio(Config(scene, tmp_path / "out"), tmp_path / "state", load_scene(scene))
        async with TestClient(TestServer(make_app(studio))) as client:
            return await body(studio, client)

    return asyncio.run(run())


SLOW = [sys.executable, "-c", "import time; time.sleep(30)"]  # a render that runs until stopped


def test_renders_started_at_once_start_one(tmp_path, monkeypatch):
    (tmp_path / "s.dfm").write_text(SCENE, encoding="utf-8")
    monkeypatch.setattr(RenderRunner, "command", lambda self: SLOW)

    async def body(studio, client):
        posts = [client.post("/api/render", headers={"X-Dfm-Studio": "1"}) for _ in range(5)]
        return sorted(r.status for r in await asyncio.gather(*posts))

    assert in_process(tmp_path / "s.dfm", tmp_path, body) == [200, 409, 409, 409, 409]


def test_a_stalled_page_is_sent_away_and_the_pages_are_capped(tmp_path):
    (tmp_path / "s.dfm").write_text(SCENE, encoding="utf-8")

    async def body(studio, client):
        stalled: asyncio.Queue = asyncio.Queue(maxsize=2)
        studio.subscribers.add(stalled)
        for n in range(3):
            studio.publish("output", n)
        ended = (stalled.get_nowait(), stalled.empty(), stalled in studio.subscribers)
        studio.subscribers.update(asyncio.Queue() for _ in range(MAX_SUBSCRIBERS))
        r = await client.get("/api/events")
        return ended, r.status

    ended, status = in_process(tmp_path / "s.dfm", tmp_path, body)
    assert ended == (None, True, False)  # the stream ends (the page reconnects, refetches), nothing stale waits
    assert status == 503


def test_a_render_printing_a_very_long_line_is_followed_to_its_end(monkeypatch):
    """A line longer than asyncio's 64 KiB line limit is cut, the output read to its end; the page hears of
    100 lines in a few events, not 100."""
    script = "import sys; print('x' * 100_000); [print(i) for i in range(100)]; print('last', end='')"
    monkeypatch.setattr(RenderRunner, "command", lambda self: [sys.executable, "-c", script])
    calls = []

    async def run():
        runner = RenderRunner(Path("s.dfm"), None, lambda: calls.append(1))
        await runner.start()
        for _ in range(300):
            if runner.returncode is not None:
                return runner
            await asyncio.sleep(0.05)
        raise AssertionError(f"the render's output was not followed to its end: {list(runner.log)[-3:]}")

    runner = asyncio.run(run())
    assert runner.returncode == 0 and list(runner.log)[-2:] == ["last", "(dfm render exited with 0)"]
    assert "x" * MAX_LINE in runner.log and len(calls) < 10


def test_a_render_started_stopped_and_continued_from_the_page(tiny_models, tmp_path):
    """Render (a `dfm render` subprocess), one at a time; Stop is Ctrl-C (exit 130, after a checkpoint); the
    next Render continues from there to the finished video."""
    scene = tmp_path / "r.dfm"
    scene.write_text(SCENE.replace("frames 24", "frames 48").replace("cadence 2", "cadence 1")
                     + f'model "{tiny_models["folder"]}"\nsteps 2\nsampler euler\n', encoding="utf-8")
    s = StudioProcess(scene, "--out", str(tmp_path / "out"))
    try:
        assert s.post("/api/render/stop")[0] == 409  # nothing to stop
        status, runner = s.post("/api/render")
        assert status == 200 and runner["running"], runner
        assert s.post("/api/render")[0] == 409  # one render at a time
        wait_for(lambda: s.json("/api/output")["frames_on_disk"] >= 2, 240, 0.2)
        status, runner = s.post("/api/render/stop")
        assert status == 200 and runner["stopping"]
        runner = wait_for(lambda: (r := s.json("/api/output")["runner"])["returncode"] is not None and r, 60)
        assert runner["returncode"] == 130, runner["log"]  # as Ctrl-C: interrupted, after a checkpoint
        stopped = s.json("/api/output")
        assert stopped["status"] == "stopped" and stopped["frames_on_disk"] < 48
        assert s.post("/api/render")[0] == 200
        done = wait_for(lambda: (o := s.json("/api/output"))["status"] == "finished" and o["video"] and o, 240, 0.5)
        assert done["resumed_at"] and done["resumed_at"] > 0 and done["frames_on_disk"] == 48
        assert done["progress"]["done"] == done["progress"]["todo"] == 48 - done["resumed_at"]
        runner = wait_for(lambda: (r := s.json("/api/output")["runner"])["returncode"] is not None and r, 30)
        assert runner["returncode"] == 0, runner["log"]
        assert s.get("/files/out/video.mp4")[0] == 200
    finally:
        s.close()
