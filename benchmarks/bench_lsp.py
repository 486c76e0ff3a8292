"""`dfm lsp` as an editor sees it: start-up, then diagnostics latency on a 5,000-line scene after a
one-character edit, and the latency of completion, hover, formatting and the outline there.

    .venv/bin/python benchmarks/bench_lsp.py [--lines 5000] [--edits 6] [--starts 3]

The server runs as a subprocess (`python -m dfm lsp`) driven over stdio by dfm.app.lsp.client, so every
figure includes JSON-RPC framing, (de)serialisation and the process boundary. The scene is
bench_check.py's (settings, prompts, 10 schedules written one key per line). Each edit replaces one
character of a key in the middle of the file (`40:(1)` → `40:(2)` and back, then a decimal comma and its
fix) as an incremental change, and the time runs from sending it to receiving the diagnostics for that
version. The server waits DEBOUNCE_S (150 ms) after the last change before it checks, so that part is
printed separately. For comparison: `dfm.api.check_text` on the same text, in process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_check import scene_text  # noqa: E402  (the same scene as the `dfm check` benchmark)

from dfm.api import check_text  # noqa: E402
from dfm.app.lsp.client import StdioClient  # noqa: E402
from dfm.app.lsp.server import DEBOUNCE_S  # noqa: E402

OPTIONS = {"tabSize": 4, "insertSpaces": True}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def start_up(runs: int) -> list[float]:
    """Spawn → `initialize` answered, in a fresh process each time."""
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        with StdioClient(timeout=120) as c:
            c.initialize()
            out.append(time.perf_counter() - t)
    return out


def edit_positions(lines: list[str]) -> tuple[int, int, int, int]:
    """(line, column) of the `1` in a `:(1)` key and of the `.` in a `:(0.5)` key, both mid-file."""
    mid = len(lines) // 2
    one = next(i for i in range(mid, len(lines)) if lines[i].strip().endswith(":(1),"))
    half = next(i for i in range(mid, len(lines)) if lines[i].strip().endswith(":(0.5),"))
    return one, lines[one].index(":(1)") + 2, half, lines[half].index(":(0.5)") + 3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=5000)
    ap.add_argument("--edits", type=int, default=6, help="one-character edits without an error (then 2 more)")
    ap.add_argument("--starts", type=int, default=3, help="server start-ups to time")
    args = ap.parse_args(argv)

    text = scene_text(args.lines)
    lines = text.splitlines()
    print(f"scene: {len(lines):,} lines, {len(text.encode()):,} bytes (bench_check.py's)")

    starts = start_up(args.starts)
    print(f"start-up (spawn → initialize answered): best {ms(min(starts))}, "
          f"all {', '.join(ms(s) for s in starts)}")

    with tempfile.TemporaryDirectory() as tmp:
        uri = (Path(tmp) / "big.dfm").as_uri()
        reference, _ = timed(lambda: check_text(text, str(Path(tmp) / "big.dfm"), base_dir=tmp))
        with StdioClient(timeout=120) as c:
            c.initialize()
            mark = c.open(uri, text)
            first, diags = timed(lambda: c.diagnostics(uri, after=mark))
            print(f"open → first diagnostics: {ms(first)} ({len(diags)} diagnostics)")

            one_line, one_col, half_line, half_col = edit_positions(lines)

            def edit(line: int, col: int, new: str) -> tuple[float, list[dict]]:
                rng = {"start": {"line": line, "character": col}, "end": {"line": line, "character": col + 1}}
                t = time.perf_counter()
                mark = c.change(uri, range_=rng, new_text=new)
                diags = c.diagnostics(uri, after=mark)
                return time.perf_counter() - t, diags

            clean = []
            for i in range(args.edits):
                took, diags = edit(one_line, one_col, "2" if i % 2 == 0 else "1")
                assert diags == [], diags
                clean.append(took)
            comma, diags = edit(half_line, half_col, ",")
            assert [d["code"] for d in diags] == ["DFM011"], diags
            fixed, diags = edit(half_line, half_col, ".")
            assert diags == [], diags
            check = [t - DEBOUNCE_S for t in clean]
            print(f"one-character edit → diagnostics ({args.edits} edits, no error): "
                  f"median {ms(statistics.median(clean))}, best {ms(min(clean))}, worst {ms(max(clean))}; "
                  f"of which the {ms(DEBOUNCE_S)} debounce, so "
                  f"checking and publishing: median {ms(statistics.median(check))}")
            print(f"decimal comma typed → DFM011 shown: {ms(comma)}; fixed → cleared: {ms(fixed)}")
            print(f"in-process dfm.api.check_text of the same text (reference): {ms(reference)}")

            end = len(lines) - 1
            timings = {
                "completion (statement name, end of file)": lambda: c.at("textDocument/completion", uri, end, 0),
                "completion (inside a key, mid-file)": lambda: c.at("textDocument/completion", uri, one_line,
                                                                    one_col),
                "hover on a key (mid-file)": lambda: c.at("textDocument/hover", uri, one_line, one_col),
                "document symbols (whole file)": lambda: c.request("textDocument/documentSymbol",
                                                                   {"textDocument": {"uri": uri}}),
                "formatting (whole file)": lambda: c.request("textDocument/formatting",
                                                             {"textDocument": {"uri": uri}, "options": OPTIONS}),
            }
            for name, fn in timings.items():
                runs = [timed(fn)[0] for _ in range(3)]
                print(f"{name}: best of 3 {ms(min(runs))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
