"""The install, read from pyproject.toml and the Makefile without building anything: every package and
data file declared (so setuptools installs quietly and ships them all), and `make demo` kept to what the
demo needs while `make test` adds the test tools and Ray."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
PACKAGES = set(SETUPTOOLS["packages"])
PACKAGE_DIR = SETUPTOOLS["package-dir"]
TEST_TOOLS = {"pytest", "hypothesis", "ruff", "numexpr", "ray"}


def _skipped(path: Path) -> bool:
    return any(part == "__pycache__" or part.startswith(".") for part in path.parts)


def _folder(package: str) -> Path:
    """The source folder of a package under package-dir (dfm.app.lsp -> app/lsp)."""
    for name in sorted(PACKAGE_DIR, key=len, reverse=True):
        if package == name or package.startswith(name + "."):
            rest = package[len(name) :].lstrip(".")
            return ROOT / PACKAGE_DIR[name] / Path(*rest.split(".")) if rest else ROOT / PACKAGE_DIR[name]
    raise AssertionError(f"{package} is under no package-dir entry")


def _package_of(folder: Path) -> str:
    """The dotted name of a folder under one of the package-dir roots (app/lsp -> dfm.app.lsp)."""
    for name, root in PACKAGE_DIR.items():
        rel = folder.relative_to(ROOT)
        root_parts = Path(root).parts
        if rel.parts[: len(root_parts)] == root_parts:
            return ".".join([name, *rel.parts[len(root_parts) :]])
    raise AssertionError(f"{folder} is under no package-dir entry")


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0].lower()


def test_every_declared_package_has_its_folder():
    for package in PACKAGES:
        assert (_folder(package) / "__init__.py").is_file(), package


def test_every_folder_of_python_files_is_a_declared_package():
    # an undeclared one would be missing from the wheel (and works only in an editable install)
    for root in set(PACKAGE_DIR.values()):
        for py in (ROOT / root).rglob("*.py"):
            if not _skipped(py.relative_to(ROOT)):
                assert _package_of(py.parent) in PACKAGES, f"{py.parent.relative_to(ROOT)} holds .py files"


def test_every_data_file_is_covered_by_package_data():
    package_data = SETUPTOOLS.get("package-data", {})
    for package in PACKAGES:
        folder = _folder(package)
        nested = [_folder(p) for p in PACKAGES if p.startswith(package + ".")]
        covered = {f for pattern in package_data.get(package, []) for f in folder.glob(pattern)}
        for f in folder.rglob("*"):
            rel = f.relative_to(ROOT)
            if f.is_dir() or _skipped(rel) or f.suffix in (".py", ".pyc"):
                continue
            if any(f.is_relative_to(n) for n in nested):
                continue  # that package's own data
            assert f in covered, f"{rel} is in no package-data pattern of {package}: it would not be installed"


def test_data_folders_are_not_taken_for_undeclared_packages():
    # with include-package-data (setuptools' default), each folder of data (runtime/configs/sd15/unet …)
    # is an importable name missing from `packages`: a "Package would be ignored" wall per folder
    data_folders = {
        f.parent
        for root in set(PACKAGE_DIR.values())
        for f in (ROOT / root).rglob("*")
        if f.is_file() and not _skipped(f.relative_to(ROOT)) and _package_of(f.parent) not in PACKAGES
    }
    if data_folders:
        assert SETUPTOOLS.get("include-package-data") is False, sorted(
            str(d.relative_to(ROOT)) for d in data_folders
        )


def test_base_dependencies_leave_out_the_test_tools_and_ray():
    base = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert not base & TEST_TOOLS, base & TEST_TOOLS
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {_name(r) for r in extras["test"]} >= {"pytest", "hypothesis", "ruff", "numexpr"}
    assert {_name(r) for r in extras["ray"]} == {"ray"}


def _makefile() -> tuple[dict[str, str], dict[str, tuple[list[str], list[str]]]]:
    """The Makefile's `:=` / `?=` / `=` variables and its rules: target -> (prerequisites, recipe lines)."""
    variables: dict[str, str] = {}
    rules: dict[str, tuple[list[str], list[str]]] = {}
    current = None
    for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines():
        if line.startswith("\t") and current is not None:
            rules[current][1].append(line.strip())
            continue
        current = None
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if m := re.match(r"^([A-Za-z_]+)\s*[:?]?=\s*(.*)$", line):
            variables[m[1]] = m[2].split(" #")[0].strip()
        elif m := re.match(r"^([^\s:=][^:=]*):(?!=)\s*(.*)$", line):
            target = _expand(m[1].strip(), variables)
            prereqs = [_expand(p, variables) for p in m[2].split("#")[0].replace("|", " ").split()]
            rules[target] = (prereqs, [])
            current = target
    return variables, rules


def _expand(text: str, variables: dict[str, str]) -> str:
    for _ in range(5):
        text = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m[1], m[0]), text)
    return text


def _installs(recipe: list[str], variables: dict[str, str]) -> list[str]:
    lines = [_expand(line, variables) for line in recipe]
    return [line for line in lines if re.search(r"\bpip\b.*\binstall\b", line) and "--upgrade pip" not in line]


def _stamps(target: str, rules) -> list[str]:
    """Every rule `target` depends on, itself included, transitively."""
    seen, todo = [], [target]
    while todo:
        t = todo.pop()
        if t in rules and t not in seen:
            seen.append(t)
            todo.extend(rules[t][0])
    return seen


def test_make_demo_installs_no_extras():
    variables, rules = _makefile()
    installs = [i for t in _stamps("demo", rules) for i in _installs(rules[t][1], variables)]
    assert installs, "make demo installs nothing"
    for line in installs:
        assert "[" not in line, f"make demo installs extras: {line}"


def test_make_test_installs_the_test_extras_and_ray():
    variables, rules = _makefile()
    installs = " ".join(i for t in _stamps("test", rules) for i in _installs(rules[t][1], variables))
    assert re.search(r"\.\[[^\]]*\btest\b", installs) and re.search(r"\.\[[^\]]*\bray\b", installs), installs
    # `make demo` after `make test` reuses the venv: the test install is a stamp on top of the demo's
    demo_stamps = set(_stamps("demo", rules)) - {"demo"}
    assert demo_stamps and demo_stamps <= set(_stamps("test", rules)), (demo_stamps, _stamps("test", rules))
