"""The studio's web server (aiohttp): the page and its assets, the scene as JSON, exact values per frame,
the preview frames, the output folder's state, the sweep grid, a render started and stopped from the page,
and one server-sent event stream that tells the page what changed.

watchfiles (`awatch`, on aiohttp's event loop) watches the scene's folder (a save, even an editor's
write-to-temp-then-rename, recompiles the scene off the loop and rebuilds the preview), the output folder
(a frame landed, the job file changed, the video was finished) and a sweep folder.

What it serves is limited to the page's own assets, the scene's soundtrack, files inside the output folder
and the sweep's variant folders (files.py); on a loopback address, requests whose Host is not a loopback name
are refused (another site cannot reach it through DNS rebinding), and the only request that changes
anything, starting a render, must come from the page itself (same Origin and a header a cross-site form
cannot send).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from ...scaleout.batch import SUMMARY_FILE
from ..render_args import out_folder
from . import LOOPBACK
from .files import safe_file
from .preview import PreviewBuilder
from .render_watch import output_state
from .renders import RenderRunner
from .scene import SceneView, frame_values, load_scene
from .sweep import find_sweep

STATIC = Path(__file__).parent / "static"
KEEPALIVE_S = 15.0
RESCAN_MS = 2000  # while a render runs, the output folder is read again this often (its ETA counts down)
WATCH_DEBOUNCE_MS = 150  # a save is on the page well within a second, and a burst of frames is one update
PAGE_HEADER = "X-Dfm-Studio"  # sent by the page's POSTs: a cross-site form or image cannot add a header
FRAME_INDEX = re.compile(r"^\d{1,9}$")
MAX_SUBSCRIBERS = 32  # open pages (event streams); more is a runaway script, answered 503
QUEUE_SIZE = 256  # events waiting for one page; a page this far behind is sent away to reconnect


@dataclass(frozen=True)
class Config:
    scene: Path
    out: Path | None = None  # --out; None: the folder `dfm render FILE` picks, again after each compile
    sweep: Path | None = None
    host: str = "127.0.0.1"


class Studio:
    """The server's state: the scene's latest compile, the preview, the render, the event subscribers."""

    def __init__(self, config: Config, state_dir: Path, view: SceneView | None = None) -> None:
        self.config = config
        self.scene_given = config.scene  # compiled as given, so diagnostics name it as `dfm check FILE` does
        self.scene = config.scene.resolve()
        self.scene_text: bytes | None = None  # as last compiled: a save of the same text compiles nothing
        self.view = view
        self.out = self.folder_for(view)
        self.generation = 1 if view is not None else 0  # of the newest compile started
        self.shown = self.generation  # of `view`, the newest compile finished: what the page is given
        self.compiled = asyncio.Event()
        self.subscribers: set[asyncio.Queue] = set()
        self.preview = PreviewBuilder(self.scene_given, state_dir / "preview",
                                      lambda info: self.publish("preview", info))
        self.render = RenderRunner(self.scene_given, config.out, lambda: self.publish("render", self.render.state()))
        self.render_lock = asyncio.Lock()  # one POST /api/render at a time: its checks and the start are one step
        self.out_watch: asyncio.Task | None = None
        self.sweep_root: Path | None = None
        self.sweep: dict | None = None
        self.tasks: list[asyncio.Task] = []
        self.last_output: dict | None = None

    # ---- events ---------------------------------------------------------------------------------------

    def publish(self, event: str, data: object) -> None:
        for q in list(self.subscribers):
            try:
                q.put_nowait((event, data))
            except asyncio.QueueFull:
                self.end_stream(q)

    def end_stream(self, q: asyncio.Queue) -> None:
        """End one page's event stream (the page is stalled, or the studio closes). A stalled page would
        otherwise miss events for good; ended, its EventSource reconnects and `hello` refetches everything."""
        while not q.empty():
            q.get_nowait()
        q.put_nowait(None)
        self.subscribers.discard(q)

    # ---- what changes ---------------------------------------------------------------------------------

    async def recompile(self) -> None:
        """Compile the scene off the loop; a save that arrives meanwhile wins (its generation is newer)."""
        self.generation += 1
        generation = self.generation
        view = await asyncio.get_running_loop().run_in_executor(None, load_scene, self.scene_given)
        if generation != self.generation:
            return
        self.view, self.shown = view, generation
        self.compiled.set()
        self.publish("scene", {"generation": generation, "ok": view.payload["ok"]})
        if view.payload["ok"]:
            self.preview.rebuild()
            await self.follow_out(self.folder_for(view))
            await self.refresh_output()

    def folder_for(self, view: SceneView | None) -> Path:
        """The output folder shown: --out, else what `dfm render FILE` writes for this compile (the scene's
        output_dir may change with an edit; a scene with errors has none, so outputs/<name>/ until it
        compiles)."""
        args = argparse.Namespace(out=self.config.out, file=str(self.scene_given))
        out = out_folder(args, view.table if view is not None else None)
        return out.resolve() if out.exists() else out.absolute()

    async def follow_out(self, out: Path) -> None:
        """Show and watch `out` from now on when it is not the folder shown (an edit changed output_dir)."""
        if out == self.out:
            return
        self.out, self.last_output = out, None
        if self.out_watch is not None:  # else start() has not run yet: it watches self.out
            self.out_watch.cancel()
            self.out_watch = asyncio.get_running_loop().create_task(self.watch_folder(out, self.refresh_out_folder,
                                                                                      self.rendering))
        await self.refresh_sweep()

    def rendering(self) -> bool:
        """Whether a render writes into the output folder (the timer then reads it again: the ETA counts)."""
        return self.render.running or bool(self.last_output and self.last_output["progress"]["running"])

    def total_frames(self) -> int | None:
        return self.view.payload.get("frames") if self.view is not None else None

    async def output_now(self) -> dict:
        state = await asyncio.get_running_loop().run_in_executor(None, output_state, self.out, self.total_frames())
        return {**state, "folder": str(self.out), "runner": self.render.state()}

    async def refresh_output(self) -> None:
        """Tell the page the output folder's state when it changed (the watcher also calls this on a timer)."""
        state = await self.output_now()
        if state != self.last_output:
            self.last_output = state
            self.publish("output", state)

    async def read_sweep(self) -> None:
        found = await asyncio.get_running_loop().run_in_executor(None, find_sweep, self.sweep_candidates(),
                                                                 self.scene.stem)
        self.sweep_root, self.sweep = found if found is not None else (None, None)

    async def refresh_sweep(self) -> None:
        """Read the sweep again and tell the page when it changed (the page then asks for it: /api/sweep
        reads, never tells)."""
        had = self.sweep
        await self.read_sweep()
        if self.sweep != had:
            self.publish("sweep", {"present": self.sweep is not None})

    async def refresh_out_folder(self) -> None:
        """The output folder changed: its render state, and the sweep when one lives there (or starts to)."""
        await self.refresh_output()
        if self.config.sweep is None and (self.sweep_root in (None, self.out)):
            await self.refresh_sweep()

    def sweep_candidates(self) -> list[Path]:
        """--sweep DIR; else the output folder, and its parent when a batch summary is there (`dfm batch`'s
        default OUT holds batch.json and OUT/<scene>/<variant>/)."""
        if self.config.sweep is not None:
            return [self.config.sweep.resolve()]
        parent = self.out.parent
        return [self.out] + ([parent] if (parent / SUMMARY_FILE).is_file() else [])

    # ---- watching -------------------------------------------------------------------------------------

    async def watch_scene(self) -> None:
        """Recompile on a save of the scene file, not on other files of its folder (frames landing in an
        outputs/ beside it, an editor's swap file), and not when a save leaves the text as it was."""
        from watchfiles import awatch

        name = self.scene.name
        async for _ in awatch(self.scene.parent, recursive=False, debounce=WATCH_DEBOUNCE_MS, step=50,
                              watch_filter=lambda _change, path: Path(path).name == name):
            if self.text_changed():
                await self.recompile()

    def text_changed(self) -> bool:
        """Whether the scene file's bytes differ from the last compiled ones (a missing file counts as
        changed: the page says it cannot be read)."""
        try:
            text = self.scene.read_bytes()
        except OSError:
            text = None
        changed = text is None or text != self.scene_text
        self.scene_text = text
        return changed

    async def watch_folder(self, folder: Path, refresh, busy=lambda: False) -> None:
        """Refresh on each change under `folder`, waiting for it to exist (a first render makes it) and
        starting again when it is removed and made again; also every RESCAN_MS while `busy()`."""
        while True:
            try:
                await self._watch_once(folder, refresh, busy)
            except (OSError, ValueError) as exc:  # an unreadable file mid-write: say so, and watch on
                print(f"dfm studio: warning: {folder}: {exc}", file=sys.stderr)
                await asyncio.sleep(1.0)

    async def _watch_once(self, folder: Path, refresh, busy) -> None:
        """Watch `folder` until it is removed (returns at once while it does not exist)."""
        from watchfiles import awatch

        if not folder.is_dir():
            await asyncio.sleep(0.5)
            return
        await refresh()
        stop = asyncio.Event()
        watcher = asyncio.get_running_loop().create_task(self._gone(folder, stop))
        first = True
        try:
            # a timeout yields too (an empty set): the first one catches a change made while the watcher
            # started, later ones count a running render's ETA down; an idle folder is not read again
            # (a scan stats every frame: most of a second for 100,000 frames)
            async for changes in awatch(folder, debounce=WATCH_DEBOUNCE_MS, step=50, stop_event=stop,
                                        rust_timeout=RESCAN_MS, yield_on_timeout=True):
                if changes or first or busy():
                    await refresh()
                first = False
        except (FileNotFoundError, RuntimeError):  # the folder went away under the watcher
            pass
        finally:
            watcher.cancel()
        await refresh()

    @staticmethod
    async def _gone(folder: Path, stop: asyncio.Event) -> None:
        while folder.is_dir():
            await asyncio.sleep(1.0)
        stop.set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.text_changed()  # the text `view` was compiled from (or is about to be)
        if self.view is None:
            self.tasks.append(loop.create_task(self.recompile()))
        else:
            self.compiled.set()
            if self.view.payload["ok"]:
                self.preview.rebuild()
        self.tasks.append(loop.create_task(self.watch_scene()))
        self.out_watch = loop.create_task(self.watch_folder(self.out, self.refresh_out_folder, self.rendering))
        await self.read_sweep()
        if self.sweep_root is not None and self.sweep_root != self.out:
            self.tasks.append(loop.create_task(self.watch_folder(self.sweep_root, self.refresh_sweep)))
        elif self.sweep_root is None and self.config.sweep is not None:
            self.tasks.append(loop.create_task(self.watch_folder(self.config.sweep.resolve(), self.refresh_sweep)))

    async def close(self) -> None:
        for q in list(self.subscribers):
            self.end_stream(q)  # so the server can shut down
        for t in [*self.tasks, self.out_watch]:
            if t is not None:
                t.cancel()
        await self.preview.close()
        await self.render.close()


# ---- handlers -----------------------------------------------------------------------------------------------

STUDIO = web.AppKey("studio", Studio)
ON_LOOPBACK = web.AppKey("loopback", bool)  # the Host check applies: every name of this machine is known


def studio_of(request: web.Request) -> Studio:
    return request.app[STUDIO]


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def static(request: web.Request) -> web.StreamResponse:
    path = safe_file(STATIC, request.match_info["path"])
    if path is None:
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Cache-Control": "no-cache"})


async def scene_json(request: web.Request) -> web.Response:
    studio = studio_of(request)
    await studio.compiled.wait()
    assert studio.view is not None
    payload = {**studio.view.payload, "generation": studio.shown, "name": studio.scene.name,
               "out": str(studio.out), "audio_url": audio_url(studio)}
    return json_reply(payload)


def audio_url(studio: Studio) -> str | None:
    """The soundtrack's path under /files/audio/ when it lies in the scene's folder (Play plays it along)."""
    track = studio.view.payload.get("audio") if studio.view is not None else None
    if not track:
        return None
    try:
        relative = Path(track).resolve().relative_to(studio.scene.parent)
    except (ValueError, OSError):
        return None
    return relative.as_posix() if safe_file(studio.scene.parent, relative.as_posix()) else None


def compact_json(data: object) -> str:
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


def json_reply(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=compact_json)


def frame_index(request: web.Request, frames: int | None) -> int:
    """The frame of the URL: digits only, inside the scene; else 404."""
    text = request.match_info["k"]
    if frames is None or not FRAME_INDEX.match(text) or int(text) >= frames:
        raise web.HTTPNotFound()
    return int(text)


async def frame_json(request: web.Request) -> web.Response:
    studio = studio_of(request)
    await studio.compiled.wait()
    view = studio.view
    if view is None or view.table is None:
        raise web.HTTPNotFound()
    k = frame_index(request, len(view.table))
    return json_reply({"frame": k, "generation": studio.shown, "values": frame_values(view.table, k)})


async def preview_frame(request: web.Request) -> web.StreamResponse:
    studio = studio_of(request)
    info = studio.preview.info
    k = frame_index(request, info["frames"] if info else None)
    path = studio.preview.frame(k)
    if path is None:
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Cache-Control": "no-cache"})


async def preview_json(request: web.Request) -> web.Response:
    return json_reply(studio_of(request).preview.info)


async def output_json(request: web.Request) -> web.Response:
    return json_reply(await studio_of(request).output_now())


async def sweep_json(request: web.Request) -> web.Response:
    """The sweep as last read: the watchers read it again when its folder changes, a request never does."""
    return json_reply(studio_of(request).sweep)


def served_root(studio: Studio, root: str, relative: str) -> Path | None:
    """The folder a /files/ROOT/… request reads from, or None: the output folder, and under the sweep root
    only the variants' own folders (safe_file refuses hidden names and paths that lead out)."""
    if root == "audio":  # the soundtrack only, not the rest of the scene's folder
        return studio.scene.parent if relative == audio_url(studio) else None
    if root == "out":
        return studio.out
    if root == "sweep" and studio.sweep is not None and studio.sweep_root is not None:
        keys = {c["key"] for c in studio.sweep["cells"]}
        return studio.sweep_root if any(relative.startswith(k + "/") for k in keys) else None
    return None


async def user_file(request: web.Request) -> web.StreamResponse:
    studio = studio_of(request)
    relative = request.match_info["path"]
    path = safe_file(served_root(studio, request.match_info["root"], relative), relative)
    if path is None:
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Cache-Control": "no-cache"})


async def render_start(request: web.Request) -> web.Response:
    studio = studio_of(request)
    async with studio.render_lock:  # the checks await: without the lock, POSTs at once would all pass them
        if studio.render.running:
            return json_reply({"error": "a render started from this page is running; stop it first"}, 409)
        state = await studio.output_now()
        if state["progress"]["running"]:
            return json_reply({"error": f"a render is already writing into {studio.out} (pid {state['pid']})"}, 409)
        await studio.render.start()
        return json_reply(studio.render.state())


async def render_stop(request: web.Request) -> web.Response:
    studio = studio_of(request)
    if not studio.render.stop():
        return json_reply({"error": "no render started from this page is running"}, 409)
    return json_reply(studio.render.state())


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: `scene`, `preview`, `output`, `render`, `sweep`, each when it changes."""
    studio = studio_of(request)
    if len(studio.subscribers) >= MAX_SUBSCRIBERS:
        raise web.HTTPServiceUnavailable(text=f"dfm studio: {MAX_SUBSCRIBERS} pages are open already\n")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_SIZE)
    studio.subscribers.add(queue)
    try:
        await resp.write(b"retry: 1000\nevent: hello\ndata: {}\n\n")
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except asyncio.TimeoutError:
                await resp.write(b": keepalive\n\n")
                continue
            if item is None:
                break
            event, data = item
            await resp.write(f"event: {event}\ndata: {compact_json(data)}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        studio.subscribers.discard(queue)
    return resp


# ---- guards -----------------------------------------------------------------------------------------------


@web.middleware
async def guard(request: web.Request, handler) -> web.StreamResponse:
    """Refuse a Host that is not this server (DNS rebinding) and a POST that is not the page's own."""
    app = request.app
    if app[ON_LOOPBACK] and request.host.rsplit(":", 1)[0].strip("[]") not in LOOPBACK:
        raise web.HTTPForbidden(text="dfm studio answers to its own address only\n")
    if request.method != "GET" and request.method != "HEAD":
        origin = request.headers.get("Origin")
        if request.headers.get(PAGE_HEADER) != "1" or (origin is not None and origin != f"http://{request.host}"):
            raise web.HTTPForbidden(text="dfm studio accepts changes from its own page only\n")
    return await handler(request)


def make_app(studio: Studio) -> web.Application:
    app = web.Application(middlewares=[guard])
    app[STUDIO] = studio
    app[ON_LOOPBACK] = studio.config.host in LOOPBACK
    app.router.add_get("/", index)
    app.router.add_get("/static/{path:.+}", static)
    app.router.add_get("/api/scene", scene_json)
    app.router.add_get("/api/frame/{k}", frame_json)
    app.router.add_get("/api/preview", preview_json)
    app.router.add_get("/api/preview/{k}.jpg", preview_frame)
    app.router.add_get("/api/output", output_json)
    app.router.add_get("/api/sweep", sweep_json)
    app.router.add_get("/api/events", events)
    app.router.add_post("/api/render", render_start)
    app.router.add_post("/api/render/stop", render_stop)
    app.router.add_get("/files/{root}/{path:.+}", user_file)

    async def on_startup(app: web.Application) -> None:
        await studio.start()

    async def on_shutdown(app: web.Application) -> None:
        await studio.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    return app


# ---- running ------------------------------------------------------------------------------------------------


class PortTaken(OSError):
    """host:port cannot be listened on (`in_use`: another program has the port); the command turns it into
    a one-line error."""

    def __init__(self, reason: str, in_use: bool) -> None:
        super().__init__(reason)
        self.reason, self.in_use = reason, in_use


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free one); PortTaken when that is not possible."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise PortTaken(str(exc.strerror or exc), in_use=False) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT, not one in use
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise PortTaken(str(exc.strerror or exc), in_use=exc.errno == errno.EADDRINUSE) from None
    sock.setblocking(False)
    return sock


def url_of(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


async def serve_async(config: Config, sock: socket.socket, view: SceneView | None, on_ready) -> None:
    """Serve until SIGINT or SIGTERM; `on_ready(url)` once the server answers."""
    state_dir = Path(tempfile.mkdtemp(prefix="dfm-studio-"))  # the preview's frames: the studio's own files
    studio = Studio(config, state_dir, view)
    runner = web.AppRunner(make_app(studio), handle_signals=False, access_log=None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runner.setup()
        await web.SockSite(runner, sock, shutdown_timeout=1.0).start()
        on_ready(url_of(config.host, sock))
        await stop.wait()
    finally:
        await runner.cleanup()
        shutil.rmtree(state_dir, ignore_errors=True)


def serve(config: Config, sock: socket.socket, view: SceneView | None, open_browser: bool) -> None:
    started = time.perf_counter()

    def ready(url: str) -> None:
        print(f"dfm studio: {url} (ready in {time.perf_counter() - started:.2f} s; Ctrl-C stops)", flush=True)
        if open_browser:
            import webbrowser

            webbrowser.open(url)

    asyncio.run(serve_async(config, sock, view, ready))
    print("dfm studio: stopped", file=sys.stderr)


__all__ = ["Config", "PortTaken", "Studio", "bind", "make_app", "serve", "serve_async", "url_of"]
