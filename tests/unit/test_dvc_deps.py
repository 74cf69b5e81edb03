"""dvc.yaml's code deps are what each stage runs, no more and no less (issue 13).

A stage is "up to date" when its deps' hashes match dvc.lock, so a module its script imports but dvc.yaml does
not list leaves stale outputs after an edit, and a folder dep over code it never imports reruns it for nothing.
This test walks the static import graph of every stage script (`ast`, imports inside functions too), adds what
those modules read from src/ through `Path(__file__)` (prompt files, the bundled sample, the package itself for
register), and checks each stage's src/ deps against it, in both directions.

An `__init__.py` that runs nothing (only a docstring and constant assignments, e.g. `__version__`) needs no dep:
editing it cannot change a result. One with an import or any other code is a module like the rest.
"""

from __future__ import annotations

import ast
import copy
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from conftest import ROOT

SRC = ROOT / "src"
PACKAGE = "medaug"
IGNORED = ("__pycache__", ".pyc")  # .dvcignore: DVC does not hash these


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def module_file(name: str) -> Path | None:
    """The file that `import <name>` runs, for a module of our package; None for anything else."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    base = SRC.joinpath(*name.split("."))
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def module_name(path: Path) -> str:
    """stages/x.py -> a name outside the package (its relative imports are meaningless); src/a/b.py -> a.b."""
    if not path.is_relative_to(SRC):
        return f"__stage__.{path.stem}"
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> set[str]:
    """Every module name an import statement in `path` may run, at any depth of the file: `import a.b` and
    `from a import b` both count a.b (when b is a module) and a; relative imports are made absolute."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            names.add(origin)
            names.update(f"{origin}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def with_parents(name: str) -> list[str]:
    """a.b.c -> [a, a.b, a.b.c]: importing a submodule runs every package __init__ above it first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _path_of_file_expr(node: ast.expr, here: Path) -> Path | None:
    """What a `Path(__file__)...` expression points at, as far as it is static: `.parent`, `.parents[n]`,
    `.resolve()`, `.with_name("x")` and `/ "x"` are followed; anything dynamic (`/ f"{name}.txt"`) stops at the
    folder so far. None when the expression is not built on Path(__file__)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Path" and node.args \
            and isinstance(node.args[0], ast.Name) and node.args[0].id == "__file__":
        return here
    if isinstance(node, ast.Attribute):
        inner = _path_of_file_expr(node.value, here)
        return inner.parent if inner is not None and node.attr == "parent" else None
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "parents":
        inner = _path_of_file_expr(node.value.value, here)
        index = node.slice
        if inner is not None and isinstance(index, ast.Constant) and isinstance(index.value, int):
            return inner.parents[index.value]
        return None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        inner = _path_of_file_expr(node.func.value, here)
        if inner is None:
            return None
        if node.func.attr == "resolve":
            return inner
        if node.func.attr == "with_name" and node.args and isinstance(node.args[0], ast.Constant):
            return inner.with_name(node.args[0].value)
        return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        inner = _path_of_file_expr(node.left, here)
        if inner is None:
            return None
        return inner / node.right.value if isinstance(node.right, ast.Constant) else inner
    return None


def file_reads(path: Path) -> set[Path]:
    """The files and folders of src/ a module reads through a `Path(__file__)` expression (outermost only)."""
    found: set[Path] = set()

    def visit(node: ast.AST) -> None:
        target = _path_of_file_expr(node, path) if isinstance(node, ast.expr) else None
        if target is not None and target != path:
            found.add(target)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)
    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return found


def runs_nothing(path: Path) -> bool:
    """An __init__.py with only a docstring and constant assignments: importing it cannot change a result."""
    if path.name != "__init__.py":
        return False
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        constant = isinstance(node, (ast.Expr, ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Constant)
        if not constant:
            return False
    return True


def files_under(path: Path) -> set[Path]:
    """What DVC hashes for a dep: the file, or every file in the folder but bytecode caches."""
    if path.is_file():
        return {path}
    return {f for f in path.rglob("*") if f.is_file() and not any(part in IGNORED for part in f.parts)
            and f.suffix not in IGNORED}


@dataclass(frozen=True)
class Uses:
    """What running a stage script touches in src/: its modules (those that run code) and what they read
    (files or folders) must be covered by deps; a folder dep may hold nothing else but do-nothing __init__ files."""
    modules: frozenset[Path]
    reads: frozenset[Path]
    inits: frozenset[Path]

    @property
    def needed(self) -> set[Path]:
        return set(self.modules) | {f for r in self.reads for f in files_under(r)}

    @property
    def touched(self) -> set[Path]:
        return self.needed | self.inits


@cache
def uses(script: Path) -> Uses:
    modules: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        for name in imported_names(path):
            for parent in with_parents(name):
                found = module_file(parent)
                if found is not None and found not in modules:
                    modules.add(found)
                    todo.append(found)
    inits = {m for m in modules if runs_nothing(m)}
    return Uses(frozenset(modules - inits), frozenset(t for m in modules for t in file_reads(m)), frozenset(inits))


# --- the check ----------------------------------------------------------------------------------------------------

SCRIPT = re.compile(r"\bstages/\w+\.py\b")
TEMPLATE = re.compile(r"^\$\{([\w.]+)\}$")


def load_yaml(path: Path) -> dict[str, Any]:
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


def dep_path(dep: Any) -> str:
    return next(iter(dep)) if isinstance(dep, dict) else str(dep)


def resolve(dep: str, params: dict[str, Any]) -> str | None:
    """A `${a.b}` dep as params.yaml sets it (None when it names no param, e.g. ${item.model} parts)."""
    m = TEMPLATE.match(dep)
    if not m:
        return None if "${" in dep else dep
    value: Any = params
    for key in m.group(1).split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return str(value)


def missing(stage: str, script: str, used: Uses, deps: dict[str, Path]) -> list[str]:
    """What the script imports or reads that no dep covers: a read folder once, not each file in it."""
    def uncovered(unit: Path) -> bool:
        return any(not any(f == p or f.is_relative_to(p) for p in deps.values()) for f in files_under(unit))
    units = [r for r in sorted(used.reads) if uncovered(r)]
    units += [m for m in sorted(used.modules) if uncovered(m) and not any(m.is_relative_to(r) for r in units)]
    return [f"{stage}: {script} {'reads' if f in used.reads else 'imports'} {rel(f)}, which no dep covers; add "
            f"`      - {rel(f)}` to its deps in dvc.yaml" for f in units]


def superfluous(stage: str, script: str, used: Uses, deps: dict[str, Path], configured: set[Path]) -> list[str]:
    """Deps that rerun the stage for nothing: missing, unused, inside another dep, or a folder holding more than
    the script uses (files the params point it at, like ${generate.mesh.descriptors}, count as used)."""
    problems = []
    allowed = used.touched | {f for c in configured for f in files_under(c) if c.exists()}
    for d, path in deps.items():
        covered = files_under(path)
        others = [o for o, q in deps.items() if o != d and path.is_relative_to(q)]
        extra = sorted(rel(f) for f in covered - allowed)
        if not path.exists():
            problems.append(f"{stage}: dep {d} does not exist; remove it from dvc.yaml")
        elif not covered & used.needed:
            problems.append(f"{stage}: dep {d} holds nothing {script} imports or reads (it reruns the stage for "
                            f"nothing); remove it from dvc.yaml")
        elif others:
            problems.append(f"{stage}: dep {d} is inside dep {others[0]} already; remove it from dvc.yaml")
        elif extra:
            problems.append(f"{stage}: folder dep {d} also holds {', '.join(extra)}, which {script} never imports "
                            f"or reads (editing them reruns the stage); list the files it uses instead")
    return problems


def check_stage(name: str, stage: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """Every way stage `name` of dvc.yaml gets its code deps wrong, one line each (empty: right)."""
    scripts = SCRIPT.findall(str(stage.get("cmd", "")))
    if len(scripts) != 1:
        return [f"{name}: cmd {stage.get('cmd')!r} names {len(scripts)} stages/*.py scripts; expected one"]
    script = scripts[0]
    raw = [dep_path(d) for d in stage.get("deps") or []]
    deps = {d: ROOT / d for d in raw if d == "src" or d.startswith("src/")}
    configured = {ROOT / r for r in (resolve(d, params) for d in raw if "${" in d) if r}
    used = uses(ROOT / script)
    problems = [] if script in raw else [f"{name}: its script is no dep; add `      - {script}` to its deps in "
                                         f"dvc.yaml"]
    return problems + missing(name, script, used, deps) + superfluous(name, script, used, deps, configured)


def check(dvc: dict[str, Any], params: dict[str, Any]) -> list[str]:
    return [p for name, stage in dvc["stages"].items() for p in check_stage(name, stage, params)]


@pytest.fixture(scope="module")
def dvc() -> dict[str, Any]:
    return load_yaml(ROOT / "dvc.yaml")


@pytest.fixture(scope="module")
def params() -> dict[str, Any]:
    return load_yaml(ROOT / "params.yaml")


# --- the tests ----------------------------------------------------------------------------------------------------

def test_every_stage_lists_exactly_the_code_it_runs(dvc, params):
    problems = check(dvc, params)
    assert not problems, "dvc.yaml code deps are wrong:\n" + "\n".join(problems)


def test_removing_any_code_dep_fails_the_check(dvc, params):
    """The acceptance point of issue 13: every listed src/ dep and script is load-bearing."""
    removable = [(name, i) for name, stage in dvc["stages"].items() for i, d in enumerate(stage["deps"])
                 if dep_path(d).startswith(("src/", "stages/"))]
    assert len(removable) > len(dvc["stages"])
    for name, i in removable:
        modified = copy.deepcopy(dvc)
        dep = modified["stages"][name]["deps"].pop(i)
        problems = check_stage(name, modified["stages"][name], params)
        assert problems, f"{name}: dvc.yaml without dep {dep} still passes the check"
        assert any(dep in p or "no dep covers" in p for p in problems), problems


def test_an_unused_or_too_broad_dep_fails_the_check(dvc, params):
    stage = copy.deepcopy(dvc["stages"]["prepare"])
    stage["deps"].append("src/medaug/llm")
    assert any("dep src/medaug/llm holds nothing" in p for p in check_stage("prepare", stage, params))
    stage = copy.deepcopy(dvc["stages"]["prepare"])
    stage["deps"] = [d for d in stage["deps"] if not dep_path(d).startswith("src/medaug/data")] + ["src/medaug/data"]
    assert any("folder dep src/medaug/data also holds" in p for p in check_stage("prepare", stage, params))


def test_the_import_graph_follows_every_kind_of_import(tmp_path, monkeypatch):
    """from-imports of submodules and packages, function-level and relative imports, package __init__ files, and
    Path(__file__) reads: a synthetic package walked like the real one."""
    pkg = tmp_path / "src" / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "sub" / "prompts").mkdir()
    (pkg / "sub" / "prompts" / "p.txt").write_text("x")
    (pkg / "__init__.py").write_text('"""Doc."""\n__version__ = "1"\n')
    (pkg / "sub" / "__init__.py").write_text("from medaug.sub.a import f\n")
    (pkg / "sub" / "a.py").write_text("def f():\n    from . import b\n")
    (pkg / "sub" / "b.py").write_text("from pathlib import Path\nT = (Path(__file__).parent / 'prompts' / 'p.txt')\n")
    (pkg / "sub" / "unused.py").write_text("")
    (tmp_path / "stages").mkdir()
    script = tmp_path / "stages" / "s.py"
    script.write_text("import os\nfrom medaug import sub\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path / "src")
    uses.cache_clear()
    try:
        got = uses(script)
    finally:
        uses.cache_clear()
    rels = lambda fs: {f.relative_to(pkg).as_posix() for f in fs}  # noqa: E731
    assert rels(got.needed) == {"sub/__init__.py", "sub/a.py", "sub/b.py", "sub/prompts/p.txt"}
    assert rels(got.touched - got.needed) == {"__init__.py"}
