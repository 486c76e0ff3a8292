"""`dfm studio` in a real browser: headless Chromium (Debian's package, /usr/bin/chromium; `make test`
installs it) driven by Playwright. The page loads with no console errors; hovering a chart at frame K
shows the table's values at K as text; an edit to the scene file updates the page, an edit with an error
shows the diagnostics as `dfm check` prints them; a frame written into the output folder appears; a sweep
folder shows its grid. One browser for the module.

The screenshots in docs/studio.md come from these tests:
`DFM_STUDIO_SCREENSHOTS=docs .venv/bin/python -m pytest tests/test_studio_browser.py` (off by default).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_studio import SCENE, StudioProcess, make_sweep, png

from dfm.api import compile_result
from dfm.app.cli import main

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SHOTS = os.environ.get("DFM_STUDIO_SCREENSHOTS")  # a folder: save each state's screenshot there
TIMEOUT_MS = 20_000  # generous: the machine is slow and shared
PREVIEW_SHOWN = ("(() => { const i = document.querySelector('#preview-frame'); "
                 "return !i.hidden && i.complete && i.naturalWidth > 0; })()")


@pytest.fixture(scope="module")
def browser():
    if not sys.platform.startswith("linux"):
        pytest.skip("the browser tests drive Debian's chromium package (Linux only)")
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need it. `make test` installs it as root "
                    "(apt-get install -y chromium); or install Debian's `chromium` package yourself")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


class Page:
    """A page of the studio at `url`, with the console's errors collected."""

    def __init__(self, browser, url: str) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.goto(url)
        self.wait("document.querySelector('#values').dataset.frame === '0'")

    def wait(self, js: str, arg=None) -> None:
        self.page.wait_for_function(js, arg=arg, timeout=TIMEOUT_MS)

    def shot(self, name: str, selector: str | None = None) -> None:
        if SHOTS:
            target = self.page.locator(selector) if selector else self.page
            target.screenshot(path=str(Path(SHOTS) / f"studio_{name}.png"))

    def close(self) -> None:
        self.page.close()


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    """examples/music_video.dfm and its track: a scene with audio features, beats and two prompts."""
    folder = tmp_path_factory.mktemp("music")
    for name in ("music_video.dfm", "music_video.mp3"):
        shutil.copy(EXAMPLES / name, folder / name)
    studio = StudioProcess(folder / "music_video.dfm", "--out", str(folder / "out"))
    yield folder, studio
    studio.close()


def test_the_page_loads_with_no_console_errors(browser, music):
    folder, studio = music
    page = Page(browser, studio.url)
    try:
        page.wait("studio.charts.length >= 2 && document.querySelectorAll('.uplot').length === studio.charts.length")
        page.wait(PREVIEW_SHOWN)
        prompts = page.page.locator("#prompts li .text").all_inner_texts()
        assert prompts == ["neon city street at night, synthwave", "neon city rooftops at night, synthwave, rain"]
        titles = page.page.locator(".u-title").all_inner_texts()
        assert "audio" in titles and "zoom" in titles
        assert page.page.locator("#error-panel").is_hidden()
        assert page.errors == []
    finally:
        page.close()


def test_hovering_a_chart_shows_the_tables_values_at_that_frame(browser, music):
    folder, studio = music
    t = compile_result((folder / "music_video.dfm").read_text(encoding="utf-8"), str(folder / "music_video.dfm")).table
    page = Page(browser, studio.url)
    try:
        k = 37
        x, y = page.page.evaluate("""(k) => {
            const c = studio.charts[2], r = c.over.getBoundingClientRect();
            return [r.left + c.valToPos(k, 'x'), r.top + r.height / 2]; }""", k)
        page.page.mouse.move(x - 30, y)
        page.page.mouse.move(x, y, steps=3)
        page.wait("document.querySelector('#values').dataset.frame === '37'")
        shown = page.page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#values tr')]
            .map(tr => [tr.dataset.column, tr.cells[1].dataset.value]))""")
        assert set(shown) == set(t.columns)
        for name, values in t.columns.items():
            v = values[k]
            if values.dtype.kind in "iuf":
                assert float(shown[name]) == float(v), name
            elif values.dtype.kind == "b":
                assert shown[name] == str(bool(v)).lower(), name
            else:
                assert shown[name] == str(v), name
        assert page.page.locator("#chosen-prompt").inner_text() == t.columns["prompt"][k]
        assert page.page.locator("#frame-slider").input_value() == "37"
        assert "/api/preview/37.jpg" in page.page.locator("#preview-frame").get_attribute("src")
        page.wait(PREVIEW_SHOWN)
        page.shot("schedules")  # the cursor on frame 37 in every chart, its values on the right
        assert page.errors == []
    finally:
        page.close()


def check_output(path: str, cwd: Path, capsys) -> str:
    here = os.getcwd()
    os.chdir(cwd)
    try:
        main(["check", path])
    finally:
        os.chdir(here)
    return capsys.readouterr().out


def test_an_edit_updates_the_page_and_an_error_shows_the_diagnostics(browser, tmp_path, capsys):
    from playwright.sync_api import expect

    scene = tmp_path / "edit.dfm"
    scene.write_text(SCENE, encoding="utf-8")
    studio = StudioProcess(Path("edit.dfm"), "--out", "out", cwd=tmp_path)
    page = Page(browser, studio.url)
    try:
        page.wait(PREVIEW_SHOWN)
        scene.write_text(SCENE.replace("a dog on a beach", "a fox in the snow"), encoding="utf-8")
        expect(page.page.locator("#prompts li").nth(1)).to_contain_text("a fox in the snow", timeout=TIMEOUT_MS)
        scene.write_text(SCENE.replace("frames 24", "frames 36"), encoding="utf-8")
        expect(page.page.locator("#frame-slider")).to_have_attribute("max", "35", timeout=TIMEOUT_MS)
        scene.write_text(SCENE.replace("zoom 0:(1.0)", "zoom 0:(1,0)"), encoding="utf-8")
        expect(page.page.locator("#error-panel")).to_be_visible(timeout=TIMEOUT_MS)
        assert page.page.locator("#diagnostics").inner_text() == check_output("edit.dfm", tmp_path, capsys)
        assert "error[DFM011]" in page.page.locator("#diagnostics").inner_text()
        assert page.page.evaluate("document.body.classList.contains('stale')")
        page.shot("error")
        scene.write_text(SCENE, encoding="utf-8")
        expect(page.page.locator("#error-panel")).to_be_hidden(timeout=TIMEOUT_MS)
        expect(page.page.locator("#frame-slider")).to_have_attribute("max", "23", timeout=TIMEOUT_MS)
        assert page.errors == []
    finally:
        page.close()
        studio.close()


def motion_frames(scene_text: str, count: int, tint: int = 0) -> list[bytes]:
    """The scene's motion preview frames as PNGs: stand-ins for rendered frames (no model in this test)."""
    import cv2

    from dfm.runtime.preview import preview_frames

    table = compile_result(scene_text.replace("size 64x64", "size 256x256"), "s.dfm").table
    out = []
    for i, frame in enumerate(preview_frames(table)):
        if i == count:
            break
        shift = np.array([40 * (i % 3) + 30 * tint, 20 * (tint % 3), 30 + 25 * (tint % 4)])
        tinted = np.clip(frame.astype(np.int16) + shift - 40, 0, 255).astype(np.uint8)
        out.append(cv2.imencode(".png", cv2.cvtColor(tinted, cv2.COLOR_RGB2BGR))[1].tobytes())
    return out


def test_a_frame_written_into_the_output_folder_appears(browser, tmp_path):
    from playwright.sync_api import expect

    (tmp_path / "s.dfm").write_text(SCENE, encoding="utf-8")
    out = tmp_path / "out"
    studio = StudioProcess(Path("s.dfm"), "--out", "out", cwd=tmp_path)
    page = Page(browser, studio.url)
    try:
        expect(page.page.locator("#render-newest-caption")).to_have_text("no frame yet")
        state = out / ".dfm-state"
        state.mkdir(parents=True)
        (state / "job.json").write_text(json.dumps({
            "dfm_job": 1, "total": 24, "todo": 12, "kept": "frames 0–11 kept: the first change is the zoom at frame 12",
            "resumed_at": None, "started": time.time() - 6, "pid": studio.proc.pid}), encoding="utf-8")
        (out / "frames").mkdir()
        for i, data in enumerate(motion_frames(SCENE, 18)):
            (out / "frames" / f"{i:05d}.png").write_bytes(data)
            if i < 12:  # kept from an earlier render: older than the job
                os.utime(out / "frames" / f"{i:05d}.png", (time.time() - 60, time.time() - 60))
        expect(page.page.locator("#render-newest")).to_have_attribute("data-index", "17", timeout=TIMEOUT_MS)
        page.wait("(() => { const i = document.querySelector('#render-newest'); "
                  "return !i.hidden && i.complete && i.naturalWidth === 256; })()")
        expect(page.page.locator("#render-kept")).to_contain_text("frames 0–11 kept")
        expect(page.page.locator("#render-status")).to_have_text("rendering")
        expect(page.page.locator("#render-progress-text")).to_contain_text("ETA")
        assert page.page.locator("#render-strip figure").count() == 12
        page.shot("render", "#render")
        (out / "frames" / "00018.png").write_bytes(png(256, 256, (30, 200, 90)))
        expect(page.page.locator("#render-newest")).to_have_attribute("data-index", "18", timeout=TIMEOUT_MS)
        assert page.errors == []
    finally:
        page.close()
        studio.close()


def test_the_sweep_grid_shows_its_cells(browser, tmp_path):
    from playwright.sync_api import expect

    (tmp_path / "s.dfm").write_text(SCENE, encoding="utf-8")
    jobs = make_sweep(tmp_path / "sweep")
    for n, job in enumerate(jobs[:-1]):  # each variant its own tint, so the grid reads at a glance
        for i, data in enumerate(motion_frames(SCENE.replace("64x64", "96x64"), 3 if n else 1, tint=n)):
            (job.out_dir / "frames" / f"{i:05d}.png").write_bytes(data)
    studio = StudioProcess(Path("s.dfm"), "--out", "out", "--sweep", "sweep", cwd=tmp_path)
    page = Page(browser, studio.url)
    try:
        expect(page.page.locator("#sweep")).to_be_visible(timeout=TIMEOUT_MS)
        assert page.page.locator("table.sweep-grid").count() == 2  # the third axis (cadence): one grid each
        assert page.page.locator("td.sweep-cell").count() == 8
        assert page.page.locator("table.sweep-grid caption").all_inner_texts() == ["cadence=1", "cadence=2"]
        page.wait("[...document.querySelectorAll('td.sweep-cell img:not([hidden])')]"
                  ".every(i => i.complete && i.naturalWidth === 96) && "
                  "document.querySelectorAll('td.sweep-cell img:not([hidden])').length === 7")
        last = page.page.locator(f'td.sweep-cell[data-key="{jobs[-1].key}"]')
        assert "no frame 0" in last.inner_text()
        page.page.locator("#frame-slider").fill("2")
        page.wait("document.querySelectorAll('td.sweep-cell img:not([hidden])').length === 6")
        page.page.locator("#frame-slider").fill("0")
        page.wait("document.querySelectorAll('td.sweep-cell img:not([hidden])').length === 7")
        page.shot("sweep", "#sweep")
        page.page.locator(f'td.sweep-cell[data-key="{jobs[0].key}"] figure').click()
        expect(page.page.locator("#video-dialog")).to_be_visible()
    finally:
        page.close()
        studio.close()
