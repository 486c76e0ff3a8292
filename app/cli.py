"""The `dfm` command line: check, fmt, compile, diff, plot, preview, import, export, render, batch, lsp, explain.

Exit codes (as ruff): 0 clean; 1 errors found (or `fmt --check` would change a file); 2 bad usage
or an internal error. Heavy modules (torch, diffusers, matplotlib) are imported only by the
commands that need them, so `dfm check` starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from pathlib import Path

from .. import __version__
from ..contract.errors import UserError

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    pass


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{path}: no such file")
    if p.is_dir():
        raise UsageError(f"{path}: is a folder; give .dfm files")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _color(stream) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR")


def _print_diagnostics(diags, sources: dict[str, str], fmt: str, stream) -> None:
    from ..dsl.diagnostics import render_concise, render_full, render_json

    if fmt == "json":
        print(render_json(diags), file=stream)
        return
    for d in diags:
        text = render_concise(d) if fmt == "concise" else render_full(d, sources.get(d.path, ""), _color(stream))
        print(text + ("" if fmt == "concise" else "\n"), file=stream)


def _summary(diags, files: int) -> str:
    from ..dsl.diagnostics import Severity

    e = sum(d.is_error for d in diags)
    w = sum(d.severity is Severity.WARNING for d in diags)
    notes = len(diags) - e - w  # what the compiler found out (a detected tempo): not problems
    also = f" ({notes} note{'s' * (notes != 1)})" if notes else ""
    if not e and not w:
        return f"ok: {files} file{'s' * (files != 1)} checked, no problems{also}"
    return f"{e} error{'s' * (e != 1)}, {w} warning{'s' * (w != 1)} in {files} file{'s' * (files != 1)}{also}"


# ---- commands ------------------------------------------------------------------------------------


def cmd_check(args) -> int:
    from ..api import check_text

    all_diags, sources, unreadable = [], {}, []
    for path in args.files:
        try:  # a missing file is reported after the others, which are still checked
            text = _read(path)
        except UsageError as exc:
            unreadable.append(str(exc))
            continue
        sources[path] = text
        all_diags += check_text(text, path)
    _print_diagnostics(all_diags, sources, args.format, sys.stdout)
    if args.format != "json":
        print(_summary(all_diags, len(sources)), file=sys.stderr)
    for why in unreadable:
        print(f"dfm check: error: {why}", file=sys.stderr)
    if unreadable:
        return EXIT_USAGE
    failed = any(d.is_error for d in all_diags) or (args.strict and any(d.is_warning for d in all_diags))
    return EXIT_ERRORS if failed else EXIT_OK


def _rename_map() -> dict[str, str]:
    from ..compiler import catalogue

    return {alias: name for alias, name in catalogue.ALIASES.items()}


def cmd_fmt(args) -> int:
    from ..dsl.formatter import format_source
    from ..contract.files import write_atomic

    rename = _rename_map()
    changed, failed = [], False
    for path in args.files:
        text = _read(path)
        try:
            new = format_source(text, rename, path)
        except ValueError as exc:
            print(f"{exc}\nhelp: run `dfm check {path}` for the details", file=sys.stderr)
            failed = True
            continue
        if path == "-":
            sys.stdout.write(new)
            continue
        if new != text:
            changed.append(path)
            if args.diff:
                sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True), path, path))
            elif not args.check:
                write_atomic(path, new)
    if path != "-":
        verb = "would reformat" if (args.check or args.diff) else "reformatted"
        for p in changed:
            print(f"{verb} {p}", file=sys.stderr)
        print(f"{len(changed)} file{'s' * (len(changed) != 1)} {verb}, "
              f"{len(args.files) - len(changed)} unchanged", file=sys.stderr)
    if failed:
        return EXIT_ERRORS
    return EXIT_ERRORS if changed and (args.check or args.diff) else EXIT_OK


def render_out(args, table) -> Path:
    """The folder `dfm render` writes: --out, else the scene's output_dir, else outputs/<scene name>/."""
    if args.out:
        return Path(args.out)
    s = table.settings
    return Path(s.output_dir) if s.output_dir else Path("outputs") / Path(args.file).stem


def preview_out(args) -> Path:
    """The file `dfm preview` writes: -o, else outputs/<scene name>/preview.mp4."""
    return Path(args.output) if args.output else Path("outputs") / Path(args.file).stem / "preview.mp4"


def scene_table(result, args):
    """The table to render: the compiled one, silent with --no-audio."""
    return result.table.with_settings(audio=None) if getattr(args, "no_audio", False) else result.table


def _compile(path: str):
    """The compile result of a file; prints diagnostics and returns None on errors."""
    from ..api import compile_result

    text = _read(path)
    result = compile_result(text, path)
    if result.diagnostics:
        _print_diagnostics(result.diagnostics, {path: text}, "full", sys.stderr)
    if result.errors or result.table is None:
        print(_summary(result.diagnostics, 1), file=sys.stderr)
        return None
    return result


def _emit(data: str, out: str | None, source: str | None = None) -> None:
    """`data` to stdout or the file `out`; never over `source`, the scene it was made from."""
    from ..contract.files import write_atomic

    if out in (None, "-"):
        sys.stdout.write(data)
    else:
        if source not in (None, "-") and Path(out).exists() and Path(out).samefile(source):
            raise UsageError(f"-o {out} is the scene itself; writing there would replace it. Choose another file")
        write_atomic(out, data)
        print(f"wrote {out}", file=sys.stderr)


def cmd_compile(args) -> int:
    result = _compile(args.file)
    if result is None:
        return EXIT_ERRORS
    table = result.table
    if args.format == "csv":
        data = table.to_csv()
    elif args.format == "json":
        data = json.dumps(table.to_json(), ensure_ascii=False, indent=1) + "\n"
    else:
        from ..compiler.parseq import to_parseq_manifest

        warnings: list[str] = []
        data = json.dumps(to_parseq_manifest(table, warnings), ensure_ascii=False, indent=2) + "\n"
        for w in warnings:
            print(f"{args.file}: warning: {w}", file=sys.stderr)
    _emit(data, args.output, args.file)
    return EXIT_OK


def cmd_plot(args) -> int:
    result = _compile(args.file)
    if result is None:
        return EXIT_ERRORS
    from .plot import plot_table

    out = Path(args.output) if args.output else Path("outputs") / Path(args.file).stem / "plot.png"
    params = [p.strip() for p in args.params.split(",") if p.strip()] if args.params else None
    try:
        plot_table(result.table, out, params)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {out}", file=sys.stderr)
    return EXIT_OK


def cmd_import(args) -> int:
    from ..compiler.deforum_import import import_settings
    from ..compiler.interop import SettingsError, load_settings
    from ..compiler.parseq import from_parseq_manifest

    text = _read(args.settings)
    try:
        data = load_settings(text)
        is_parseq = "rendered_frames" in data  # a Parseq manifest rather than Deforum settings
        result = (from_parseq_manifest if is_parseq else import_settings)(data, source=args.settings)
    except SettingsError as exc:
        print(f"{args.settings}: error: {exc.message}", file=sys.stderr)
        if getattr(exc, "help", None):
            print(f"help: {exc.help}", file=sys.stderr)
        return EXIT_ERRORS
    for w in result.warnings:
        print(f"{args.settings}: warning: {w}", file=sys.stderr)
    out = args.output or (str(Path(args.settings).with_suffix(".dfm")) if args.settings != "-" else "-")
    if out != "-" and Path(out).exists() and not args.force:
        raise UsageError(f"{out} exists; importing again would replace your edits. Pass --force to replace it, "
                         "or -o NEW.dfm")
    _emit(result.text, out, args.settings)
    return EXIT_OK


def cmd_export(args) -> int:
    result = _compile(args.file)
    if result is None:
        return EXIT_ERRORS
    from ..compiler.deforum_export import export_settings

    exported = export_settings(result)
    for w in exported.warnings:
        print(f"{args.file}: warning: {w}", file=sys.stderr)
    _emit(exported.dumps() + "\n", args.output, args.file)
    return EXIT_OK


def cmd_render(args) -> int:
    # the speed-up switches (--dtype, --attention, ...) apply with --watch and --ray too: app/watch.py
    # passes them to each render, and the Ray workers apply them as render() does (runtime/actor.py)
    if args.watch:
        from .watch import watch_render

        return watch_render(args)
    result = _compile(args.file)
    if result is None:
        return EXIT_ERRORS
    out = render_out(args, result.table)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from ..runtime.render import RenderInterrupted, render

    def on_resume(frame: int, total: int) -> None:
        print(f"resuming at frame {frame} of {total} (--restart renders from frame 0)", file=sys.stderr)

    def on_keep(message: str) -> None:  # an incremental re-render: what it keeps of the folder's render, and why
        print(message, file=sys.stderr)

    _check_ray_options(args)
    progress = _progress_bar(args.quiet)
    try:
        if args.ray:  # the frames split across Ray workers (scaleout/shard.py)
            report = _render_on_ray(args, result, out, progress, on_resume, on_keep)
        else:
            report = render(scene_table(result, args), out, scene_text=result.scene.source, scene_path=args.file,
                            model=args.model, device=args.device, allow_pickle=args.allow_pickle,
                            progress=progress, depth_model=args.depth_model, restart=args.restart,
                            on_resume=on_resume, on_keep=on_keep, dtype=args.dtype, speed=_speedups(args))
    except RenderInterrupted as exc:
        progress.close()
        print(f"interrupted at frame {exc.next_frame}; run the same command again to resume", file=sys.stderr)
        return 130
    finally:  # a RenderError (any UserError) is printed by main()
        progress.close()
    for w in report.warnings:
        print(f"{args.file}: warning: {w}", file=sys.stderr)
    if not args.quiet:
        print(f"wrote {report.frames} frames to {report.out_dir}" +
              (f" and {report.video}" if report.video else ""), file=sys.stderr)
    return EXIT_OK


def _speedups(args):
    """The render's speed-up switches (runtime/speedups.py: no torch import); None: the defaults."""
    from ..runtime.speedups import from_args

    return from_args(args)


def _check_ray_options(args) -> None:
    if not args.ray and (args.workers is not None or args.cpus_per_worker != 1):
        raise UsageError("--workers and --cpus-per-worker apply with --ray only")


def _render_on_ray(args, result, out: Path, progress, on_resume, on_keep):
    from ..scaleout.cluster import open_pool
    from ..scaleout.shard import check_shardable, render_sharded

    check_shardable(result.table)  # before Ray starts
    with open_pool(args.ray, device=args.device, dtype=args.dtype, allow_pickle=args.allow_pickle,
                   workers=args.workers, cpus_per_worker=args.cpus_per_worker, limit=len(result.table)) as pool:
        return render_sharded(scene_table(result, args), out, pool, scene_text=result.scene.source,
                              scene_path=args.file, model=args.model, restart=args.restart, progress=progress,
                              on_resume=on_resume, on_keep=on_keep, speed=_speedups(args))


def cmd_batch(args) -> int:
    from ..scaleout.batch import parse_vary, plan

    if "-" in args.scenes:
        raise UsageError("batch renders scene files; standard input has no name to render it under")
    _check_ray_options(args)
    scenes = [(path, _read(path)) for path in args.scenes]
    out = Path(args.out)
    planned = plan(scenes, [parse_vary(v) for v in args.vary], out)
    if planned.diagnostics:
        _print_diagnostics(planned.diagnostics, planned.sources, "full", sys.stderr)
    if planned.errors:
        print(_summary(planned.diagnostics, len(scenes)) + "; nothing was rendered", file=sys.stderr)
        return EXIT_ERRORS
    from ..scaleout.batch import SUMMARY_FILE, check_summary

    check_summary(out / SUMMARY_FILE)
    if args.dry_run:
        for job in planned.jobs:
            print(f"{job.out_dir}\t{len(job.table)} frames\t{job.scene}")
        return EXIT_OK
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from ..scaleout.batch import BatchInterrupted, ProgressView, run_batch, summary_lines
    from ..scaleout.cluster import open_pool

    view = None
    try:
        with open_pool(args.ray, device=args.device, allow_pickle=args.allow_pickle, workers=args.workers,
                       cpus_per_worker=args.cpus_per_worker, limit=len(planned.jobs)) as pool:
            if args.ray and not args.quiet:
                print(f"batch: {len(planned.jobs)} scenes on {pool.shape.describe()}", file=sys.stderr)
            view = ProgressView(planned.jobs, quiet=args.quiet)
            results = run_batch(planned.jobs, pool, model=args.model, depth_model=args.depth_model,
                                restart=args.restart, retries=args.retries, observer=view,
                                summary=out / SUMMARY_FILE)
    except BatchInterrupted as exc:
        finished = sum(r.status in ("done", "up to date") for r in exc.results)
        print(f"\ninterrupted with {finished} of {len(planned.jobs)} scenes finished; run the same command again "
              "to continue (each scene resumes where it stopped)", file=sys.stderr)
        return 130
    finally:
        if view is not None:
            view.close()
    for r in results:
        for w in (r.outcome.report.warnings if r.status == "done" else []):
            print(f"{r.job.key}: warning: {w}", file=sys.stderr)
    for line in summary_lines(results, out):
        print(line, file=sys.stderr)
    return EXIT_ERRORS if any(r.status != "done" and r.status != "up to date" for r in results) else EXIT_OK


def _progress_bar(quiet: bool = False):
    """A tqdm bar (frame, frames/s, ETA) that appears with the first frame, not while models load;
    with `quiet`, one that draws nothing."""

    class _Progress:
        bar = None

        def __call__(self, done: int, total_: int) -> None:
            if quiet:
                return
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=total_, unit="frame", dynamic_ncols=True, desc="render")
            self.bar.total = total_
            self.bar.update(done - self.bar.n)

        def close(self) -> None:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return _Progress()


def cmd_preview(args) -> int:
    if args.watch:
        from .watch import watch_preview

        return watch_preview(args)
    result = _compile(args.file)
    if result is None:
        return EXIT_ERRORS
    from ..runtime.preview import render_preview

    out = preview_out(args)
    progress = _progress_bar(args.quiet)
    try:
        path = render_preview(scene_table(result, args), out, progress=progress)
    finally:
        progress.close()
    print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK


def cmd_diff(args) -> int:
    from .diff import run_diff

    return run_diff(args.old, args.new, args.format)


def cmd_lsp(args) -> int:
    from .lsp import serve

    return serve(log_file=args.log_file)


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args)


def cmd_explain(args) -> int:
    from ..dsl.codes import CODES, explain

    text = explain(args.code)
    if text is None:
        raise UsageError(f"unknown code {args.code!r}; codes are {', '.join(sorted(CODES))}")
    print(text)
    return EXIT_OK


# ---- parser ------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dfm", description="Scene scripts (.dfm) to Stable Diffusion animations.")
    ap.add_argument("--version", action="version", version=f"dfm {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("check", help="report every mistake in scenes, before any GPU work")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--format", choices=("full", "concise", "json"), default="full")
    p.add_argument("--strict", action="store_true", help="warnings fail too")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("fmt", help="rewrite scenes in the canonical layout")
    p.add_argument("files", nargs="+", metavar="FILE")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file would change")
    g.add_argument("--diff", action="store_true", help="print the changes instead of writing them")
    p.set_defaults(func=cmd_fmt)

    p = sub.add_parser("compile", help="print the per-frame table")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-o", "--output", metavar="OUT", help="write here instead of standard output")
    p.add_argument("--format", choices=("csv", "json", "parseq"), default="csv")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("plot", help="draw the schedules that vary (PNG)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-o", "--output", metavar="PNG")
    p.add_argument("--params", metavar="A,B", help="only these columns")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("import", help="Deforum settings file or Parseq manifest → .dfm")
    p.add_argument("settings", metavar="SETTINGS")
    p.add_argument("-o", "--output", metavar="SCENE")
    p.add_argument("--force", action="store_true", help="replace an existing scene file")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help=".dfm → A1111 Deforum settings file")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-o", "--output", metavar="SETTINGS")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("render", help="render frames, video.mp4, table.csv and manifest.json")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--out", metavar="DIR", help="output folder (default: outputs/<scene name>)")
    p.add_argument("--model", metavar="M", help="hub id, diffusers folder or .safetensors; overrides the scene")
    p.add_argument("--depth-model", metavar="M", help="3D: hub id or local folder of a depth model; overrides "
                   "the scene's depth_model")
    p.add_argument("--device", default="auto", metavar="D", help="auto (cuda, mps, cpu), cuda, cuda:1, mps, cpu")
    p.add_argument("--allow-pickle", action="store_true", help="allow loading a .ckpt (pickle) checkpoint")
    p.add_argument("--restart", action="store_true", help="render from frame 0 even if an interrupted render "
                   "of the same scene left a checkpoint in the output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-audio", action="store_true", help="video.mp4 without the scene's soundtrack")
    p.add_argument("--watch", action="store_true", help="render, then again on each save of FILE, keeping the "
                   "frames the edit cannot change (Ctrl-C stops)")
    from ..runtime.speedups import add_arguments as speed_arguments  # argparse only: no torch

    speed_arguments(p)
    _ray_arguments(p, "split the frames across Ray workers (stills, interpolation, video input): ADDRESS "
                   "(host:6379, ray://host:10001), auto (the cluster `ray start` runs here) or local")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("batch", help="render many scenes and sweeps of their values, here or on a Ray cluster")
    p.add_argument("scenes", nargs="+", metavar="SCENE")
    p.add_argument("--out", metavar="DIR", default="outputs", help="each scene renders into DIR/<scene name>/ "
                   "(default: outputs)")
    p.add_argument("--vary", action="append", default=[], metavar="NAME=VALUES", help="render every value: "
                   "seed=1..8, strength=0.5,0.6 (values holding commas: separate them with |); several --vary "
                   "render every combination, each into DIR/<scene name>/<name=value,...>/")
    p.add_argument("--model", metavar="M", help="hub id, diffusers folder or .safetensors; overrides the scenes'")
    p.add_argument("--depth-model", metavar="M", help="3D: a depth model; overrides the scenes' depth_model")
    p.add_argument("--device", default="auto", metavar="D", help="auto (cuda, mps, cpu), cuda, cpu; without --ray "
                   "also cuda:1 or mps")
    p.add_argument("--allow-pickle", action="store_true", help="allow loading a .ckpt (pickle) checkpoint")
    p.add_argument("--restart", action="store_true", help="render every scene from frame 0, even those that are "
                   "finished or have a checkpoint")
    p.add_argument("--retries", type=int, default=1, metavar="N", help="with --ray: run a scene again (it resumes) "
                   "when its worker dies, up to N times (default 1)")
    p.add_argument("--dry-run", action="store_true", help="check every scene and list the folders; render nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _ray_arguments(p, "render on Ray workers, one per GPU: ADDRESS (host:6379, ray://host:10001), auto (the "
                   "cluster `ray start` runs here) or local (start one on this machine)")
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("preview", help="the camera motion over a test card, no model (seconds)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-o", "--output", metavar="MP4", help="default: outputs/<scene name>/preview.mp4")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-audio", action="store_true", help="the preview without the scene's soundtrack")
    p.add_argument("--watch", action="store_true", help="preview again on each save of FILE (Ctrl-C stops)")
    p.set_defaults(func=cmd_preview)

    p = sub.add_parser("diff", help="what changed between two versions of a scene, and the first frame it changes")
    p.add_argument("old", metavar="OLD", help="a scene file, or a git revision of one: HEAD:scene.dfm")
    p.add_argument("new", metavar="NEW", help="a scene file, or a git revision of one")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("lsp", help="the language server for editors (LSP over stdin/stdout)")
    p.add_argument("--stdio", action="store_true", help="talk over stdin/stdout (the default; accepted because "
                   "some clients pass it)")
    p.add_argument("--log-file", metavar="FILE", help="write the server's log here")
    p.set_defaults(func=cmd_lsp)

    p = sub.add_parser("explain", help="explain a diagnostic code, e.g. DFM011")
    p.add_argument("code")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("demo", help="the demo: table, plot and motion preview, then a few-step render if a model "
                       "is reachable (what `make demo` runs)")
    p.add_argument("file", nargs="?", metavar="FILE", help="the scene (default: examples/demo.dfm)")
    p.add_argument("--out", metavar="DIR", default="outputs/demo", help="output folder (default: outputs/demo)")
    p.add_argument("--model", metavar="M", help="hub id, diffusers folder or .safetensors; overrides the scene")
    p.add_argument("--device", default="auto", metavar="D", help="auto (cuda, mps, cpu), cuda, cuda:1, mps, cpu")
    p.add_argument("--yes", action="store_true", help="on a CPU, start at once (no countdown to interrupt)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo)
    return ap


def _ray_arguments(p: argparse.ArgumentParser, ray_help: str) -> None:
    p.add_argument("--ray", metavar="ADDRESS", help=ray_help + "; needs pip install 'dfm[ray]'")
    p.add_argument("--workers", type=int, metavar="N", help="with --ray: N workers (default: one per GPU of the "
                   "cluster, or one per --cpus-per-worker CPUs without GPUs)")
    p.add_argument("--cpus-per-worker", type=int, default=1, metavar="N", help="with --ray on CPUs: the cores (torch "
                   "threads) of each worker (default 1)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"dfm {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UserError as exc:  # every stage's error a user can fix (RenderError, ClusterError, BatchError, ...)
        print(f"dfm {args.command}: error: {exc.message}" + (f"\nhelp: {exc.help}" if exc.help else ""),
              file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_ERRORS)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except OSError as exc:  # a read-only folder, a full disk: the user's to fix, not a bug
        where = f" {exc.filename}" if exc.filename else ""
        print(f"dfm {args.command}: error: cannot write or read{where}: {exc.strerror or exc}\n"
              "help: check the folder's permissions and free space, or choose another path", file=sys.stderr)
        return EXIT_ERRORS
    except Exception as exc:  # an internal error: never a bare traceback for the user
        if os.environ.get("DFM_DEBUG"):
            raise
        print(f"dfm {args.command}: internal error: {type(exc).__name__}: {exc}\n"
              "This is a bug in dfm; please report it with the scene (DFM_DEBUG=1 shows the traceback).",
              file=sys.stderr)
        return EXIT_USAGE
