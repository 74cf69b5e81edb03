"""dvc.yaml's code deps are what each stage runs, file by file, no more and no less (issues 13 and 29).

A stage is "up to date" when its deps' hashes match dvc.lock, so a module its script imports but dvc.yaml does
not list leaves stale outputs after an edit, and a dep over code it never imports reruns it for nothing.
`medaug.deps` walks the static import graph of every stage script (`ast`, imports inside functions too), adds what
those modules read from src/ through `Path(__file__)` (prompt files, the bundled sample, the package itself for
register), and `medaug deps --write` writes the result into dvc.yaml; these tests hold dvc.yaml to it, file by
file, in both directions (the rule is in medaug/deps.py's docstring).
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from medaug.cli import main
from medaug.deps import (PACKAGE, check_deps, check_stage, dep_path, expected_deps, files_under, is_code, load_yaml,
                         stage_script, uses, write_deps)
from support.paths import ROOT

SRC_LINE = re.compile(r"^      - src[/\s]")


@pytest.fixture(scope="module")
def dvc() -> dict[str, Any]:
    return load_yaml(ROOT / "dvc.yaml")


@pytest.fixture(scope="module")
def params() -> dict[str, Any]:
    return load_yaml(ROOT / "params.yaml")


def project_copy(tmp: Path, dvc_text: str) -> Path:
    """A project root in `tmp` with the given dvc.yaml, the real params.yaml, and the real code (symlinked)."""
    (tmp / "dvc.yaml").write_text(dvc_text, encoding="utf-8")
    shutil.copy(ROOT / "params.yaml", tmp / "params.yaml")
    for name in ("src", "stages"):
        (tmp / name).symlink_to(ROOT / name, target_is_directory=True)
    return tmp


def listing(dvc: dict[str, Any], path: Path) -> set[str]:
    """The stages whose src/ deps in dvc.yaml cover file `path` (an edit of it makes them stale)."""
    return {name for name, stage in dvc["stages"].items()
            if any(path == ROOT / d or path.is_relative_to(ROOT / d) for d in map(dep_path, stage["deps"])
                   if is_code(d))}


def importing(dvc: dict[str, Any], path: Path) -> set[str]:
    """The stages whose script imports or reads file `path`, by the import graph."""
    return {name for name, stage in dvc["stages"].items() if path in uses(ROOT, ROOT / stage_script(stage)[0]).needed}


# --- the tests ----------------------------------------------------------------------------------------------------

def test_every_stage_lists_exactly_the_code_it_runs():
    problems = check_deps(ROOT)
    assert problems == [], "dvc.yaml code deps differ from the import graph (run `medaug deps --write`):\n" \
        + "\n".join(problems)


def test_removing_any_code_dep_fails_the_check(dvc, params):
    """The acceptance point of issue 13: every listed src/ dep and script is load-bearing."""
    removable = [(name, i) for name, stage in dvc["stages"].items() for i, d in enumerate(stage["deps"])
                 if dep_path(d).startswith(("src/", "stages/"))]
    assert len(removable) > len(dvc["stages"])
    for name, i in removable:
        modified = copy.deepcopy(dvc)
        dep = modified["stages"][name]["deps"].pop(i)
        problems = check_stage(ROOT, name, modified["stages"][name], params)
        assert problems, f"{name}: dvc.yaml without dep {dep} still passes the check"
        assert any(dep in p and "medaug deps --write" in p for p in problems), problems


def test_an_unused_or_too_broad_dep_fails_the_check(dvc, params):
    stage = copy.deepcopy(dvc["stages"]["prepare"])
    stage["deps"].append("src/medaug/llm")
    assert any("dep src/medaug/llm holds nothing" in p for p in check_stage(ROOT, "prepare", stage, params))
    stage = copy.deepcopy(dvc["stages"]["prepare"])
    stage["deps"] = [d for d in stage["deps"] if not dep_path(d).startswith("src/medaug/data")] + ["src/medaug/data"]
    assert any("folder dep src/medaug/data also holds" in p for p in check_stage(ROOT, "prepare", stage, params))
    # A folder dep fails even when the stage uses every file in it: it is not file by file (issue 29).
    stage = copy.deepcopy(dvc["stages"]["train"])
    models = ROOT / "src/medaug/models"
    assert {f for f in files_under(models) if f.suffix == ".py"} <= uses(ROOT, ROOT / "stages/train.py").needed
    stage["deps"] = [d for d in stage["deps"] if not dep_path(d).startswith("src/medaug/models/")]
    stage["deps"].append("src/medaug/models")
    problems = check_stage(ROOT, "train", stage, params)
    assert any(p.startswith("train: folder dep src/medaug/models ") for p in problems), problems
    # A file inside a folder the stage reads is listed once, as the folder.
    stage = copy.deepcopy(dvc["stages"]["evaluate-teacher"])
    stage["deps"].append("src/medaug/evaluate/prompts/fewshot.txt")
    problems = check_stage(ROOT, "evaluate-teacher", stage, params)
    assert any("dep src/medaug/evaluate/prompts/fewshot.txt is inside src/medaug/evaluate/prompts" in p
               for p in problems), problems


def test_the_import_graph_follows_every_kind_of_import(tmp_path):
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
    got = uses(tmp_path, script)
    rels = lambda fs: {f.relative_to(pkg).as_posix() for f in fs}  # noqa: E731
    assert rels(got.needed) == {"sub/__init__.py", "sub/a.py", "sub/b.py", "sub/prompts/p.txt"}
    assert rels(got.touched - got.needed) == {"__init__.py"}
    assert expected_deps(tmp_path, "stages/s.py") == ["src/medaug/sub/__init__.py", "src/medaug/sub/a.py",
                                                      "src/medaug/sub/b.py", "src/medaug/sub/prompts/p.txt"]


def test_a_read_folder_is_listed_once_as_the_folder(tmp_path):
    """A dynamic read (`/ f"{name}.txt"`) is its folder; a module or file inside a read folder is not listed again
    (register reads the whole package); a read that does not exist is none."""
    pkg = tmp_path / "src" / PACKAGE
    (pkg / "prompts").mkdir(parents=True)
    (pkg / "prompts" / "a.txt").write_text("a")
    (pkg / "prompts" / "b.txt").write_text("b")
    (pkg / "__init__.py").write_text("")
    (pkg / "m.py").write_text("from pathlib import Path\nfrom medaug import n\n\n"
                              "def t(name):\n"
                              "    return (Path(__file__).parent / 'prompts' / f'{name}.txt').read_text()\n\n"
                              "A = Path(__file__).parent / 'prompts' / 'a.txt'\n"
                              "OUT = Path(__file__).with_name('out.txt')\n")
    (pkg / "n.py").write_text("from pathlib import Path\nSRC = Path(__file__).resolve().parents[0]\n")
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "one.py").write_text("from medaug.m import t\n")
    (tmp_path / "stages" / "two.py").write_text("import medaug.n\n")
    assert expected_deps(tmp_path, "stages/one.py") == ["src/medaug"]  # n.py reads the package: all of it
    (pkg / "n.py").write_text("X = 1\n")
    uses.cache_clear()
    assert expected_deps(tmp_path, "stages/one.py") == ["src/medaug/m.py", "src/medaug/n.py", "src/medaug/prompts"]
    assert expected_deps(tmp_path, "stages/two.py") == ["src/medaug/n.py"]  # medaug/__init__.py runs nothing


def test_write_deps_writes_the_import_graph_and_nothing_else(tmp_path):
    """`medaug deps --write` on a scrambled dvc.yaml: src/ entries in another order (with their comments), one
    missing, one folder too many; it writes what the check accepts, leaves every other line as it was, keeps the
    comment of each src/ entry that stays, and a second run changes nothing."""
    original = (ROOT / "dvc.yaml").read_text(encoding="utf-8")
    lines = original.splitlines(keepends=True)
    scrambled: list[str] = []
    block: list[str] = []
    for line in lines + ["\n"]:
        if SRC_LINE.match(line):
            block.append(line)
            continue
        scrambled += block[::-1]  # a deps list's src/ entries, reversed
        block = []
        scrambled.append(line)
    scrambled = scrambled[:-1]
    dropped = next(i for i, line in enumerate(scrambled) if "      - src/medaug/models/card.py" in line)
    del scrambled[dropped]
    at = scrambled.index("      - stages/prepare.py\n") + 1
    scrambled.insert(at, "      - src/medaug/llm\n")
    root = project_copy(tmp_path, "".join(scrambled))
    assert check_deps(root)

    changed = write_deps(root)
    written = (root / "dvc.yaml").read_text(encoding="utf-8")
    assert "prepare" in changed and "compare" in changed
    assert check_deps(root) == []
    assert [line for line in written.splitlines() if not SRC_LINE.match(line)] == \
        [line for line in original.splitlines() if not SRC_LINE.match(line)]
    with_comment = {line for line in scrambled if SRC_LINE.match(line) and "#" in line}
    assert with_comment and with_comment <= set(written.splitlines(keepends=True))
    assert write_deps(root) == []
    assert (root / "dvc.yaml").read_text(encoding="utf-8") == written


def test_a_module_reruns_only_the_stages_that_import_it(dvc):
    """A docstring edit in models/card.py makes stale exactly the stages whose scripts import it (it is no
    folder's bystander); the same holds for every file in src/."""
    card = ROOT / "src/medaug/models/card.py"
    assert importing(dvc, card), "no stage imports models/card.py"
    assert importing(dvc, card) != set(dvc["stages"])
    assert listing(dvc, card) == importing(dvc, card)
    wrong = {}
    for f in sorted(files_under(ROOT / "src")):
        if listing(dvc, f) != importing(dvc, f):
            wrong[f.relative_to(ROOT).as_posix()] = (sorted(listing(dvc, f)), sorted(importing(dvc, f)))
    assert not wrong, "file: (stages listing it, stages importing it)\n" + "\n".join(f"{k}: {v}"
                                                                                    for k, v in wrong.items())
    for name, stage in dvc["stages"].items():
        assert ROOT / "src/medaug/deps.py" not in uses(ROOT, ROOT / stage_script(stage)[0]).modules, name


def test_the_cli_fails_on_a_missing_dep_and_write_fixes_it(dvc, tmp_path, monkeypatch, capsys):
    card = "src/medaug/models/card.py"
    stages = sorted(name for name, stage in dvc["stages"].items() if card in map(dep_path, stage["deps"]))
    assert stages
    text = (ROOT / "dvc.yaml").read_text(encoding="utf-8")
    root = project_copy(tmp_path, text.replace(f"      - {card}\n", ""))
    monkeypatch.chdir(root)

    with pytest.raises(SystemExit) as failed:
        main(["deps"])
    assert failed.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (f"error: dvc.yaml code deps differ from the import graph for {len(stages)} stages: run "
                       "`medaug deps --write`")
    assert sorted(err[:-1]) == sorted(f"{name}: {stage_script(dvc['stages'][name])[0]} imports {card}, which its "
                                      "deps in dvc.yaml do not list; run `medaug deps --write`" for name in stages)

    main(["deps", "--write"])
    assert f"wrote the code deps of {len(stages)} stages" in capsys.readouterr().out
    assert check_deps(root) == []
    main(["deps"])
    assert capsys.readouterr().out == "dvc.yaml: code deps match the import graph\n"
