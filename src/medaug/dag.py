"""dvc.yaml's round stages (issue 34), written from params.yaml: `medaug rounds --write` writes them, `medaug rounds`
(and tests/unit/test_dag.py) fails when dvc.yaml differs.

DVC's templating has no arithmetic, so one matrix cannot say "round k reads round k-1's student". Each round k
of the recipes in train.rounds is its own stages instead, a matrix over train.models, the recipes with at least k
rounds and train.seeds (models and seeds stay `${...}`, so changing them needs no rewrite; changing train.rounds or
a recipe's `rounds` does, and the round stages refuse to run for rounds params no longer ask for):

- `probe-r<k>`: scores the student of round k-1 on the train split (round 1: the `original` candidate, once for
  every recipe, so its matrix has no recipe);
- `teach-r<k>`: the round's parents, the teacher's items, the filter, the round's training set;
- `train-r<k>` and `evaluate-r<k>`: dvc.yaml's own `train` and `evaluate` stages with the candidate
  <model>-<recipe>-r<k>-<seed> and its training set: every dep, param and out they declare, so they never drift.

The stages go right before `compare`; every other stage stays as it is. Nothing in stages/ imports this module.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from medaug.deps import _yaml, expected_deps
from medaug.params import Params, load_params
from medaug.paths import BASELINE, PREPARED, PROBES, ROUND_REPORTS, ROUNDS, TRAIN_SETS

KINDS = ("probe", "teach", "train", "evaluate")
ROUND_STAGE = re.compile(rf"^({'|'.join(KINDS)})-r\d+$")
FIX = "run `medaug rounds --write`"
CAND = "${item.model}-${item.recipe}"


def _cand(k: int) -> str:
    """The round candidate's name in dvc.yaml's templating."""
    return f"{CAND}-r{k}-${{item.seed}}"


def _student(k: int) -> str:
    """The name of round k's student before it (round 0: the original candidate)."""
    return f"${{item.model}}-{BASELINE}-${{item.seed}}" if k == 1 else _cand(k - 1)


DESC = "written by `medaug rounds --write` from params train.rounds: edit params.yaml and rerun it, not this"


def _matrix(recipes: list[str] | None) -> dict[str, Any]:
    m: dict[str, Any] = {"model": "${train.models}"}
    if recipes is not None:
        m["recipe"] = list(recipes)  # a list of its own: a shared one would be a YAML anchor
    m["seed"] = "${train.seeds}"
    return m


def _probe(root: Path, k: int, recipes: list[str]) -> dict[str, Any]:
    student = _student(k)
    variant = BASELINE if k == 1 else "${item.recipe}-r" + str(k - 1)
    return {
        "desc": DESC,
        "matrix": _matrix(None if k == 1 else recipes),
        "cmd": f"python stages/probe.py ${{item.model}} {variant} ${{item.seed}}",
        "deps": ["stages/probe.py", *expected_deps(root, "stages/probe.py"), "${task.file}",
                 f"{PREPARED}/train.jsonl", f"models/{student}"],
        "params": ["models", "task", "evaluate.batch_size", "cpu.isa"],
        "outs": [f"{PROBES}/{student}.jsonl", {f"reports/probe/{student}.json": {"cache": False}}],
    }


def _teach(root: Path, k: int, recipes: list[str]) -> dict[str, Any]:
    cand = _cand(k)
    before = [f"{TRAIN_SETS}/{BASELINE}.jsonl"] if k == 1 else \
        [f"{ROUNDS}/{_cand(k - 1)}/train.jsonl", f"{ROUND_REPORTS}/{_cand(k - 1)}.json"]
    return {
        "desc": DESC,
        "matrix": _matrix(recipes),
        "cmd": f"python stages/teach.py ${{item.model}} ${{item.recipe}} {k} ${{item.seed}}",
        "deps": ["stages/teach.py", *expected_deps(root, "stages/teach.py"), "${task.file}", str(PREPARED),
                 f"{PROBES}/{_student(k)}.jsonl", *before, "${generate.mesh.descriptors}"],
        "params": ["teacher", "generate", "filter", "task", "variants.${item.recipe}"],
        "outs": [f"{ROUNDS}/{cand}",
                 {f"{ROUND_REPORTS}/{cand}.json": {"cache": False, "persist": True}}],
        "metrics": [{f"metrics/rounds/{cand}.json": {"cache": False, "persist": True}}],
    }


def _from(stage: dict[str, Any], k: int) -> dict[str, Any]:
    """dvc.yaml's `train` or `evaluate` stage for round k's candidate: its variant `${item.variant}` becomes
    `${item.recipe}-r<k>`, its training set the round's, its recipe's params `variants.${item.recipe}`."""
    def swap(value: Any) -> Any:
        if isinstance(value, str):
            value = value.replace(f"{TRAIN_SETS}/${{item.variant}}.jsonl", f"{ROUNDS}/{_cand(k)}/train.jsonl")
            value = value.replace("variants.${item.variant}", "variants.${item.recipe}")
            return value.replace("${item.variant}", f"${{item.recipe}}-r{k}")
        if isinstance(value, dict):
            return {swap(key): swap(v) for key, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    return {"desc": DESC, **swap(_plain(stage)),
            "matrix": {"model": "${train.models}", "recipe": None, "seed": "${train.seeds}"}}


def _plain(value: Any) -> Any:
    """ruamel's commented containers as plain dicts and lists (comments dropped)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def round_stages(root: Path, p: Params, stages: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The round stages params `p` asks for, in order, given dvc.yaml's `stages` (its train and evaluate)."""
    most = max((p.variants[r].rounds for r in p.train.rounds), default=0)
    out: dict[str, dict[str, Any]] = {}
    for k in range(1, most + 1):
        recipes = [r for r in p.train.rounds if p.variants[r].rounds >= k]
        out[f"probe-r{k}"] = _probe(root, k, recipes)
        out[f"teach-r{k}"] = _teach(root, k, recipes)
        for kind in ("train", "evaluate"):
            stage = _from(stages[kind], k)
            stage["matrix"]["recipe"] = list(recipes)
            out[f"{kind}-r{k}"] = stage
    return out


def _load(root: Path) -> tuple[Any, Any]:
    yaml = _yaml()
    return yaml, yaml.load((Path(root) / "dvc.yaml").read_text(encoding="utf-8"))


def check_rounds(root: Path, p: Params | None = None) -> list[str]:
    """One line per round stage dvc.yaml lacks, has too many of, or declares otherwise than params ask."""
    root = Path(root)
    p = p or load_params(root / "params.yaml")
    _, doc = _load(root)
    have = {k: _plain(v) for k, v in doc["stages"].items() if ROUND_STAGE.match(str(k))}
    want = round_stages(root, p, doc["stages"])
    problems = [f"dvc.yaml: stage {name} is missing (params train.rounds asks for it): {FIX}"
                for name in want if name not in have]
    problems += [f"dvc.yaml: stage {name} is not one params train.rounds asks for: {FIX}"
                 for name in have if name not in want]
    problems += [f"dvc.yaml: stage {name} differs from what params.yaml and the train/evaluate stages make of it: "
                 f"{FIX}" for name in want if name in have and have[name] != want[name]]
    return problems


def write_rounds(root: Path) -> list[str]:
    """Rewrite dvc.yaml's round stages from params.yaml (see the module docstring); the names written."""
    from medaug.data.jsonl import atomic_path

    root = Path(root)
    p = load_params(root / "params.yaml")
    yaml, doc = _load(root)
    stages = doc["stages"]
    want = round_stages(root, p, stages)
    for name in [k for k in stages if ROUND_STAGE.match(str(k))]:
        del stages[name]
    at = list(stages).index("compare") if "compare" in stages else len(stages)
    for offset, (name, stage) in enumerate(want.items()):
        stages.insert(at + offset, name, stage)
    out = io.StringIO()
    yaml.dump(doc, out)
    with atomic_path(root / "dvc.yaml") as tmp:
        tmp.write_text(out.getvalue(), encoding="utf-8")
    return list(want)

