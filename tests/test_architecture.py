"""The stage boundaries, read from the source: what each stage may import, and no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = {"dsl": ROOT / "dsl", "compiler": ROOT / "compiler", "runtime": ROOT / "runtime"}


def imports(path: Path, package: str, submodules: bool = False) -> set[str]:
    """Every module `path` imports, at any depth (inside functions too), as an absolute dfm.* name.
    With `submodules`, `from X import a` also yields `X.a` (it is one when `a` is a module)."""
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
            if not node.module or submodules:  # `from . import catalogue`
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
          "pathlib", "os", "stat", "tempfile", "typing"}


def test_the_table_contract_is_numpy_only():
    for module in ("table", "reads", "modes"):  # the table and the vocabulary it carries
        imps = imports(ROOT / "contract" / f"{module}.py", "dfm.contract")
        assert {i for i in imps if i.startswith("dfm")} <= {"dfm.contract.errors", "dfm.contract.reads",
                                                            "dfm.contract.modes"}, module
        assert {i.split(".")[0] for i in imps if not i.startswith("dfm")} <= STDLIB | {"numpy", "typing"}, module


@pytest.mark.parametrize("module", ["errors", "files", "media"])
def test_the_modules_both_stages_share_need_only_the_standard_library(module):
    imps = imports(ROOT / "contract" / f"{module}.py", "dfm.contract")
    outside = {i.split(".")[0] for i in imps if not i.startswith("dfm.contract.errors")}
    assert outside <= STDLIB | {"imageio_ffmpeg"}  # media reads videos through the bundled ffmpeg, lazily


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (module -> the modules it imports), as the path round it, or None."""
    done: set[str] = set()

    def visit(m: str, path: tuple[str, ...]) -> list[str] | None:
        if m in path:
            return [*path[path.index(m):], m]
        if m in done:
            return None
        for n in sorted(graph[m]):
            if cycle := visit(n, (*path, m)):
                return cycle
        done.add(m)
        return None

    return next((c for m in sorted(graph) if (c := visit(m, ()))), None)


def all_cycles(graph: dict[str, set[str]]) -> list[str]:
    """One cycle through each group of modules that import each other (a strongly connected component)."""
    reach = {m: _reachable(graph, m) for m in graph}
    groups = {frozenset(n for n in reach[m] if m in reach[n]) | {m} for m in graph if m in reach[m]}
    return sorted(" -> ".join(find_cycle({m: graph[m] & g for m in g}) or []) for g in groups)


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), list(graph[start])
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    return seen


@pytest.mark.parametrize("stage", list(STAGES))
def test_no_import_cycles_inside_a_stage(stage):
    found = modules(stage)  # read once: each call parses every file of the stage
    graph = {m: {i for i in imps if i in found} - {m} for m, imps in found.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


# ---- the whole package -------------------------------------------------------------------------------

# every folder the package is installed from (pyproject's package-dir), subpackages included
PACKAGE_DIRS = {"dfm": ROOT / "dfm", "dfm.dsl": ROOT / "dsl", "dfm.compiler": ROOT / "compiler",
                "dfm.contract": ROOT / "contract", "dfm.runtime": ROOT / "runtime", "dfm.app": ROOT / "app",
                "dfm.scaleout": ROOT / "scaleout"}
MAX_MODULE_LINES = 700
MAX_FUNCTION_LINES = 80


def all_modules() -> dict[str, Path]:
    """Every dfm module, by its dotted name (a package by its own name, for its __init__.py)."""
    out: dict[str, Path] = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if "__pycache__" in parts:
                continue
            name = ".".join((package, *parts))
            out[name.removesuffix(".__init__")] = path
    return out


def test_all_modules_finds_every_folder():
    found = all_modules()
    assert {"dfm", "dfm.api", "dfm.dsl.parser", "dfm.compiler.compile", "dfm.contract.errors", "dfm.runtime.render",
            "dfm.app.cli", "dfm.app.lsp", "dfm.app.lsp.server", "dfm.scaleout.batch"} <= set(found)


def test_no_import_cycles_in_the_whole_package():
    """Across every dfm module, imports inside functions included: a lazy import is still a dependency,
    and a cycle of them means two modules that cannot be understood (or moved) one without the other."""
    found = all_modules()
    graph = {}
    for name, path in found.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = {i for i in imports(path, package, submodules=True) if i in found} - {name}
    assert all_cycles(graph) == []


def test_find_cycle_sees_a_cycle_through_a_lazy_import(tmp_path):
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import x\n")
    graph = {f"p.{m}": {i for i in imports(tmp_path / f"{m}.py", "p", submodules=True) if i in ("p.a", "p.b")}
             for m in "ab"}
    assert find_cycle(graph) == ["p.a", "p.b", "p.a"]
    assert all_cycles(graph) == ["p.a -> p.b -> p.a"]


def _long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]


def test_no_module_over_700_lines_and_no_function_over_80():
    """Sizes a reader can hold in mind: a module over 700 lines holds more than one concern, a function
    over 80 lines more than one step."""
    too_long = []
    for path in all_modules().values():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(ROOT)} ({lines} lines)")
        too_long += _long_functions(path)
    assert too_long == []
