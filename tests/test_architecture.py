"""The stage boundaries, read from the source: what each stage may import, and no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = {"dsl": ROOT / "dsl", "compiler": ROOT / "compiler", "runtime": ROOT / "runtime"}


def imports(path: Path, package: str) -> set[str]:
    """Every module `path` imports, at any depth (inside functions too), as an absolute dfm.* name."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                out.add(node.module or "")
                continue
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            mod = ".".join(base + ([node.module] if node.module else []))
            out.add(mod)
            if not node.module:  # `from . import catalogue`
                out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def modules(stage: str) -> dict[str, set[str]]:
    return {f"dfm.{stage}.{p.stem}": imports(p, f"dfm.{stage}") for p in sorted(STAGES[stage].glob("*.py"))}


@pytest.mark.parametrize(("stage", "forbidden"), [
    ("dsl", ("dfm.compiler", "dfm.runtime", "numpy", "torch")),
    ("compiler", ("dfm.runtime", "torch", "diffusers", "transformers")),
    ("runtime", ("dfm.dsl", "dfm.compiler")),
])
def test_each_stage_imports_only_what_comes_before_it(stage, forbidden):
    bad = {m: sorted(i for i in imps if i.startswith(forbidden)) for m, imps in modules(stage).items()}
    assert {m: b for m, b in bad.items() if b} == {}


STDLIB = {"__future__", "csv", "hashlib", "io", "json", "collections", "dataclasses", "enum", "functools",
          "pathlib", "os", "stat", "tempfile"}


def test_the_table_contract_is_numpy_only():
    imps = imports(ROOT / "contract" / "table.py", "dfm.contract")
    assert {i for i in imps if i.startswith("dfm")} <= {"dfm.contract.errors"}
    assert {i.split(".")[0] for i in imps if not i.startswith("dfm")} <= STDLIB | {"numpy"}


@pytest.mark.parametrize("module", ["errors", "files", "media"])
def test_the_modules_both_stages_share_need_only_the_standard_library(module):
    imps = imports(ROOT / "contract" / f"{module}.py", "dfm.contract")
    outside = {i.split(".")[0] for i in imps if not i.startswith("dfm.contract.errors")}
    assert outside <= STDLIB | {"imageio_ffmpeg"}  # media reads videos through the bundled ffmpeg, lazily


@pytest.mark.parametrize("stage", list(STAGES))
def test_no_import_cycles_inside_a_stage(stage):
    graph = {m: {i for i in imps if i in modules(stage)} - {m} for m, imps in modules(stage).items()}
    done: set[str] = set()

    def visit(m: str, path: tuple[str, ...]) -> None:
        if m in path:
            raise AssertionError("import cycle: " + " -> ".join((*path[path.index(m):], m)))
        if m in done:
            return
        for n in sorted(graph[m]):
            visit(n, (*path, m))
        done.add(m)

    for m in graph:
        visit(m, ())
