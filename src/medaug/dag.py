"""dvc.yaml's round stages (issue 34), written from params.yaml: `medaug rounds --write` writes them, `medaug rounds`
(and tests/unit/test_rounds.py) fails when dvc.yaml differs.

DVC's templating has no arithmetic, so one matrix cannot say "round k reads round k-1's student". Each round
k = 1..K is its own stages instead, each a matrix over train.models, `${train.rounds}` (the recipes with rounds)
and train.seeds. K is the `rounds` of the recipes in train.rounds (they share it; params.py checks), or with none
listed the most any recipe of `variants` has: the shipped dvc.yaml has the stages of the shipped `targeted` and
`targeted-random` recipes (2 rounds), which with train.rounds empty stand for no stage at all. So turning rounds
on, or changing models, seeds, per_round or pick, is a params change (`dvc exp run -S` too); only another number
of rounds needs `medaug rounds --write`, and a round stage params do not ask for refuses to run, saying so.

- `probe-r<k>` scores the student before (round k-1's; round 0: the `original` candidate) on the train split;
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


MATRIX = {"model": "${train.models}", "recipe": "${train.rounds}", "seed": "${train.seeds}"}
DESC = "round {k}, written by `medaug rounds --write` from params (variants.<recipe>.rounds): edit those, not this"


def _probe(root: Path, k: int) -> dict[str, Any]:
    return {
        "desc": DESC.format(k=k),
        "matrix": dict(MATRIX),
        "cmd": f"python stages/probe.py ${{item.model}} ${{item.recipe}} {k} ${{item.seed}}",
        "deps": ["stages/probe.py", *expected_deps(root, "stages/probe.py"), "${task.file}",
                 f"{PREPARED}/train.jsonl", f"models/{_student(k)}"],
        "params": ["models", "task", "evaluate.batch_size", "cpu.isa"],
        "outs": [f"{PROBES}/{_cand(k)}.jsonl", {f"reports/probe/{_cand(k)}.json": {"cache": False}}],
    }


def _teach(root: Path, k: int) -> dict[str, Any]:
    cand = _cand(k)
    before = [f"{TRAIN_SETS}/{BASELINE}.jsonl"] if k == 1 else \
        [f"{ROUNDS}/{_cand(k - 1)}/train.jsonl", f"{ROUND_REPORTS}/{_cand(k - 1)}.json"]
    return {
        "desc": DESC.format(k=k),
        "matrix": dict(MATRIX),
        "cmd": f"python stages/teach.py ${{item.model}} ${{item.recipe}} {k} ${{item.seed}}",
        "deps": ["stages/teach.py", *expected_deps(root, "stages/teach.py"), "${task.file}", str(PREPARED),
                 f"{PROBES}/{cand}.jsonl", *before, "${generate.mesh.descriptors}"],
        "params": ["teacher", "generate", "filter", "task", "variants.${item.recipe}"],
        "outs": [f"{ROUNDS}/{cand}",
                 {f"{ROUND_REPORTS}/{cand}.json": {"cache": False, "persist": True}},
                 {f"{ROUND_REPORTS}/{cand}.md": {"cache": False, "persist": True}}],
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

    return {"desc": DESC.format(k=k), **swap(_plain(stage)), "matrix": dict(MATRIX)}


def _plain(value: Any) -> Any:
    """ruamel's commented containers as plain dicts and lists (comments dropped)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def depth(p: Params) -> int:
    """K, the last round dvc.yaml has stages for (see the module docstring)."""
    listed = [p.variants[r].rounds for r in p.train.rounds]
    return max(listed or [v.rounds for v in p.variants.values()] or [0])


def round_stages(root: Path, p: Params, stages: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The round stages params `p` asks for, in order, given dvc.yaml's `stages` (its train and evaluate)."""
    out: dict[str, dict[str, Any]] = {}
    for k in range(1, depth(p) + 1):
        out[f"probe-r{k}"] = _probe(root, k)
        out[f"teach-r{k}"] = _teach(root, k)
        out[f"train-r{k}"] = _from(stages["train"], k)
        out[f"evaluate-r{k}"] = _from(stages["evaluate"], k)
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
    problems = [f"dvc.yaml: stage {name} is missing (the recipes' rounds ask for it): {FIX}"
                for name in want if name not in have]
    problems += [f"dvc.yaml: stage {name} is beyond the recipes' rounds: {FIX}"
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

