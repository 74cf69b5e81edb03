"""Named stage inputs and outputs (issue 30): what a stage script calls takes at most 4 positional arguments, and
every path a stage's `<Stage>IO.at(...)` names is one its dvc.yaml entry declares (a dependency or an output, or
a file inside a declared folder, or a folder holding declared files)."""

import ast
import dataclasses
import importlib
import inspect
from pathlib import Path

import pytest
import yaml

from medaug.paths import (Candidate, CompareIO, DatasetIO, EvaluateIO, FilterIO, GenerateIO, PretrainIO,
                          RegisterIO, TeacherIO, TrainIO)
from support.paths import ROOT

SCRIPTS = sorted((ROOT / "stages").glob("*.py"))


def medaug_calls(script: Path):
    """(call text, the medaug function, positional args at the call) for each `module.function(...)` call in the
    script's main() whose module the script imports from medaug."""
    src = script.read_text()
    tree = ast.parse(src)
    imported = {a.asname or a.name: f"{node.module}.{a.name}" for node in tree.body
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("medaug") for a in node.names}
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    for call in ast.walk(main):
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and isinstance(call.func.value, ast.Name) and call.func.value.id in imported):
            yield ast.get_source_segment(src, call.func), getattr(resolve(imported[call.func.value.id]),
                                                                  call.func.attr), len(call.args)


def resolve(dotted: str):
    """A module, or a name in one (`medaug.paths.TrainIO`)."""
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError:
        module, _, name = dotted.rpartition(".")
        return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_a_stage_function_takes_at_most_four_positional_arguments(script):
    calls = list(medaug_calls(script))
    assert calls or script.stem == "registry", f"{script.name}: calls no medaug function from main()"
    for text, fn, given in calls:
        required = [q for q in inspect.signature(fn).parameters.values()
                    if q.kind in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD) and q.default is q.empty]
        assert given <= 4 and len(required) <= 4, f"{script.name}: {text} takes {given} positional arguments"


def declared(stage: str, **item: str) -> set[str]:
    """The deps and outs of a dvc.yaml stage, `${item.<key>}` filled in from `item`, other templates left."""
    entry = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]
    paths = [*entry.get("deps", []), *(next(iter(o)) if isinstance(o, dict) else o
                                       for kind in ("outs", "metrics", "plots") for o in entry.get(kind, []))]
    out = set()
    for path in map(str, paths):
        for key, value in item.items():
            path = path.replace(f"${{item.{key}}}", value)
        out.add(path)
    return out


def covered(path: Path, paths: set[str]) -> bool:
    return any(path == Path(d) or Path(d) in path.parents or path in Path(d).parents for d in paths)


C = Candidate("m", "augmented", 0)
CASES = {"generate": (GenerateIO.at(), {}), "filter": (FilterIO.at(), {}),
         "dataset": (DatasetIO.at("augmented"), {"variant": "augmented"}),
         "pretrain": (PretrainIO.at("m", Path("${pretrain.corpus}")), {"model": "m"}),
         "train": (TrainIO.at(C), {"model": "m", "variant": "augmented", "seed": "0"}),
         "train-dapt": (TrainIO.at(Candidate.dapt("m", "augmented", 0)),
                        {"model": "m", "variant": "augmented", "seed": "0"}),
         "evaluate": (EvaluateIO.at(C), {"model": "m", "variant": "augmented", "seed": "0"}),
         "zero-shot": (EvaluateIO.at(Candidate("m", "zero-shot")), {"model": "m"}),
         "evaluate-teacher": (TeacherIO.at(), {}), "compare": (CompareIO.at(), {}), "register": (RegisterIO.at(), {})}


@pytest.mark.parametrize("stage", CASES)
def test_every_path_a_stage_io_names_is_declared_in_dvc_yaml(stage):
    io, item = CASES[stage]
    paths = declared(stage, **item)
    for field in dataclasses.fields(io):
        value = getattr(io, field.name)
        for path in value if isinstance(value, tuple) else [value]:
            if path is None:
                continue
            assert covered(path, paths), f"{stage}: {type(io).__name__}.{field.name} = {path} is not in dvc.yaml " \
                                         f"({sorted(paths)})"
