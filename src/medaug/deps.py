"""dvc.yaml's code deps, file by file, from each stage script's import graph (issues 13 and 29).

A stage is "up to date" when its deps' hashes match dvc.lock, so a module its script imports but dvc.yaml does
not list leaves stale outputs after an edit, and a dep over code it never imports reruns it for nothing (a folder
dep does both: it reruns the stage for any file in it, even one added later). `medaug deps --write` writes each
stage's code deps from the import graph; `medaug deps` (and tests/unit/test_dvc_deps.py) fails when dvc.yaml
differs from it. Nothing in stages/ imports this module.

The rule (`expected_deps(root, script)`), for the script a stage's `cmd` names (`stages/<x>.py`):

1. Walk the static import graph (`ast`) from the script, over modules of the `medaug` package in `<root>/src`:
   import statements at any depth count (inside functions too), relative imports are made absolute,
   `import a.b.c` and `from a.b import c` run the `__init__.py` of every package above (a, a.b) first, and
   `from a import b` follows `a.b` when b is a module. Other packages (the standard library, torch) are no deps.
2. Every module reached is a dep, as its file, except an `__init__.py` that runs nothing (only a docstring and
   constant assignments, e.g. `__version__`): editing it cannot change a result. One with an import or any other
   code is a module like the rest.
3. Every path a reached module reads through a `Path(__file__)` expression (prompt files, the bundled sample, the
   package itself for register) is a dep as the walker finds it: the file or folder the expression names when it
   is static (`Path(__file__).parent / "prompts" / "repair.txt"`, `... / "sample" / "medqa"`), the folder so far
   when it is dynamic (`/ f"{name}.txt"`, `/ name`: the whole folder). A read that does not exist (a path the
   module writes) or lies outside `<root>/src` is no code dep: dvc.yaml's other entries cover data.
4. A read folder is listed once, as the folder: a module or a read inside a read folder is not listed again
   (register reads the whole package, so its only code dep is `src/medaug`).
5. The list is sorted by its POSIX paths relative to the root (`src/...`).

The check compares the literal `src/` entries of each stage's `deps:` with that list, both ways, one line per
stage and path. It also requires the script itself as a dep, and lets a `${...}` dep that params.yaml points into
src/ (e.g. `${generate.mesh.descriptors}`, a file in src/medaug/augment) stand outside the comparison, as long
as the path it names exists: those are data the stage is configured to read, not code it imports.

`write_deps` rewrites only the `src/` entries: in each stage's `deps:` it removes them and inserts the expected
list right after the script entry (ruamel.yaml round trip: comments, key order, the `matrix:` and `${...}`
templating and every other entry stay as they are; the end-of-line comment of a src/ entry that stays moves
with it, that of a removed one is lost).
"""

from __future__ import annotations

import ast
import io
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

PACKAGE = "medaug"
IGNORED = ("__pycache__", ".pyc")  # .dvcignore: DVC does not hash these
SCRIPT = re.compile(r"\bstages/\w+\.py\b")
TEMPLATE = re.compile(r"^\$\{([\w.]+)\}$")
FIX = "run `medaug deps --write`"


# --- the import graph ---------------------------------------------------------------------------------------------

def rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def module_file(root: Path, name: str) -> Path | None:
    """The file that `import <name>` runs, for a module of our package in `root`/src; None for anything else."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    base = (root / "src").joinpath(*name.split("."))
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def module_name(root: Path, path: Path) -> str:
    """stages/x.py -> a name outside the package (its relative imports are meaningless); src/a/b.py -> a.b."""
    src = root / "src"
    if not path.is_relative_to(src):
        return f"__stage__.{path.stem}"
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(root: Path, path: Path) -> set[str]:
    """Every module name an import statement in `path` may run, at any depth of the file: `import a.b` and
    `from a import b` both count a.b (when b is a module) and a; relative imports are made absolute."""
    name = module_name(root, path)
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
        static = isinstance(node.right, ast.Constant) and isinstance(node.right.value, str)
        return inner / node.right.value if static else inner
    return None


def file_reads(path: Path) -> set[Path]:
    """The files and folders a module reads through a `Path(__file__)` expression (outermost only)."""
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
    """What running a stage script touches in src/: the modules that run code, the files and folders they read
    (existing, under src/), and the do-nothing package __init__ files on the way (which need no dep)."""
    modules: frozenset[Path]
    reads: frozenset[Path]
    inits: frozenset[Path]

    @property
    def needed(self) -> set[Path]:
        """Every file whose edit can change what the script does."""
        return set(self.modules) | {f for r in self.reads for f in files_under(r)}

    @property
    def touched(self) -> set[Path]:
        return self.needed | self.inits

    @property
    def units(self) -> dict[Path, str]:
        """The deps that cover `needed` (rule 4 of the module docstring), each with how the script uses it."""
        folders = [r for r in self.reads if r.is_dir()]
        inside = lambda p: any(p != f and p.is_relative_to(f) for f in folders)  # noqa: E731
        units = {r: "reads" for r in self.reads if not inside(r)}
        units.update({m: "imports" for m in self.modules if not inside(m) and m not in units})
        return units


@cache
def uses(root: Path, script: Path) -> Uses:
    """The import graph from `script` (cached per process: the code does not change under a check)."""
    modules: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        for name in imported_names(root, path):
            for parent in with_parents(name):
                found = module_file(root, parent)
                if found is not None and found not in modules:
                    modules.add(found)
                    todo.append(found)
    inits = {m for m in modules if runs_nothing(m)}
    src = root / "src"
    reads = {t for m in modules for t in file_reads(m) if t.exists() and t.is_relative_to(src)}
    return Uses(frozenset(modules - inits), frozenset(reads), frozenset(inits))


def expected_deps(root: Path, script: str) -> list[str]:
    """The sorted `src/...` deps stage script `script` (relative to `root`) needs: the rule of the docstring."""
    return sorted(rel(root, p) for p in uses(root, root / script).units)


# --- dvc.yaml -----------------------------------------------------------------------------------------------------

def _yaml(typ: str = "rt") -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ=typ, pure=True)
    if typ == "rt":
        yaml.preserve_quotes = True
        yaml.width = 4096  # never wrap
        yaml.indent(mapping=2, sequence=4, offset=2)  # dvc.yaml's style: `      - path` under `    deps:`
    return yaml


def load_yaml(path: Path) -> Any:
    return _yaml("safe").load(path.read_text(encoding="utf-8"))


def dep_path(dep: Any) -> str:
    """A deps entry's path: a string, or the key of a `- path: {options}` mapping."""
    return str(next(iter(dep))) if isinstance(dep, dict) else str(dep)


def is_code(dep: str) -> bool:
    """A literal src/ entry (what `write_deps` owns); `${...}` entries are params-configured."""
    return dep == "src" or dep.startswith("src/")


def _norm(dep: str) -> str:
    return PurePosixPath(dep).as_posix()


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


def stage_script(stage: dict[str, Any]) -> list[str]:
    return SCRIPT.findall(str(stage.get("cmd", "")))


# --- the check ----------------------------------------------------------------------------------------------------

def _superfluous(root: Path, name: str, script: str, dep: str, used: Uses, expected: list[str]) -> str:
    """Why listed src/ dep `dep` is not in the import graph's list, one line with the fix."""
    path = root / dep
    needed = used.needed
    covered = files_under(path) if path.exists() else set()
    read_folders = [e for e in expected if (root / e).is_dir() and PurePosixPath(dep).is_relative_to(e)]
    if not path.exists():
        why = "does not exist"
    elif read_folders:
        why = f"is inside {read_folders[0]}, which {script} reads as a folder (listed once, as the folder)"
    elif not covered & needed:
        why = f"holds nothing {script} imports or reads (it reruns the stage for nothing)"
    elif path.is_dir():
        unused = sorted(rel(root, f) for f in covered - used.touched)
        inits = sorted(rel(root, f) for f in covered & used.inits)
        held = ([f"{', '.join(unused)}, which {script} never imports or reads"] if unused else []) \
            + ([f"{', '.join(inits)}, which run{'s' if len(inits) == 1 else ''} no code"] if inits else [])
        why = (f"also holds {'; and '.join(held)}" if held else
               f"holds only files {script} uses, but any file added to it later would rerun the stage too")
        return f"{name}: folder dep {dep} {why}; list the files it uses instead: {FIX}"
    else:
        why = f"is not a file {script} imports or reads"
    return f"{name}: dep {dep} {why}; {FIX}"


def check_stage(root: Path, name: str, stage: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """Every way stage `name` of dvc.yaml (parsed) gets its code deps wrong, one line each (empty: right)."""
    scripts = stage_script(stage)
    if len(scripts) != 1:
        return [f"{name}: cmd {stage.get('cmd')!r} names {len(scripts)} stages/*.py scripts; expected one"]
    script = scripts[0]
    raw = [dep_path(d) for d in stage.get("deps") or []]
    problems = [] if script in raw else [f"{name}: its script {script} is no dep; add `      - {script}` to its "
                                         f"deps in dvc.yaml, or {FIX}"]
    used = uses(root, root / script)
    units = {rel(root, p): how for p, how in used.units.items()}
    expected = sorted(units)
    listed = [_norm(d) for d in raw if is_code(d)]
    problems += [f"{name}: {script} {units[e]} {e}, which its deps in dvc.yaml do not list; {FIX}"
                 for e in expected if e not in listed]
    problems += [f"{name}: dep {d} is listed {n} times; {FIX}" for d, n in sorted(Counter(listed).items()) if n > 1]
    problems += [_superfluous(root, name, script, d, used, expected) for d in sorted(set(listed) - set(expected))]
    for d in raw:
        configured = resolve(d, params) if "${" in d else None
        if configured and is_code(_norm(configured)) and not (root / configured).exists():
            problems.append(f"{name}: dep {d} names {configured} (params.yaml), which does not exist; fix params.yaml")
    return problems


def check(root: Path, dvc: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """`check_stage` over every stage of a parsed dvc.yaml."""
    return [p for name, stage in dvc["stages"].items() for p in check_stage(root, name, stage, params)]


def check_deps(root: Path) -> list[str]:
    """How `root`/dvc.yaml's code deps differ from the import graph: one line per stage and path (empty: none)."""
    params_file = root / "params.yaml"
    params = (load_yaml(params_file) or {}) if params_file.exists() else {}
    return check(root, load_yaml(root / "dvc.yaml"), params)


# --- the writer ---------------------------------------------------------------------------------------------------

def _own_line(comment: list[Any]) -> bool:
    """A sequence entry's ruamel comment that is only its end-of-line `# ...`: it can move with the entry (one
    that also holds the full-line comments or blank lines below the entry stays behind, and is lost)."""
    token = comment[0]
    return token is not None and not any(comment[1:]) and token.value.lstrip().startswith("#") \
        and token.value.count("\n") == 1 and token.value.endswith("\n")


def write_deps(root: Path) -> list[str]:
    """Rewrite the src/ entries of every stage's deps in `root`/dvc.yaml from the import graph (the docstring's
    rule), right after the script entry, in sorted order; everything else stays. Returns the stages changed."""
    from ruamel.yaml.comments import CommentedSeq

    from medaug.data.jsonl import atomic_path

    path = root / "dvc.yaml"
    yaml = _yaml()
    doc = yaml.load(path.read_text(encoding="utf-8"))
    changed = []
    for name, stage in doc["stages"].items():
        scripts = stage_script(stage)
        if len(scripts) != 1:
            continue  # check_deps names it: there is no one script to walk
        script = scripts[0]
        if stage.get("deps") is None:
            stage.insert(list(stage).index("cmd") + 1 if "cmd" in stage else len(stage), "deps", CommentedSeq())
        deps = stage["deps"]
        before = [dep_path(d) for d in deps]
        comments = {}  # the end-of-line comment of a src/ entry that stays, to put back on it
        for i in reversed(range(len(deps))):
            if is_code(dep_path(deps[i])):
                comment = deps.ca.items.get(i)
                if comment and _own_line(comment):
                    comments[_norm(dep_path(deps[i]))] = comment
                del deps[i]  # CommentedSeq moves the comments of the entries after it up with them
        at = next((i for i, d in enumerate(deps) if dep_path(d) == script), None)
        if at is None:
            deps.insert(0, script)
            at = 0
        for offset, dep in enumerate(expected_deps(root, script), start=1):
            deps.insert(at + offset, dep)  # moves the comments of the entries after it down with them
            if dep in comments:
                deps.ca.items[at + offset] = comments[dep]
        if [dep_path(d) for d in deps] != before:
            changed.append(str(name))
    if changed:
        out = io.StringIO()
        yaml.dump(doc, out)
        with atomic_path(path) as tmp:
            tmp.write_text(out.getvalue(), encoding="utf-8")
    return changed
