"""DVC stages `evaluate@<model>-<variant>-<seed>`, `evaluate-dapt@...` and `zero-shot@<model>` (no seed): score the
test split, write metrics."""

import sys
from pathlib import Path

from medaug import headline
from medaug.cpu import cap_kernels
from medaug.data.jsonl import write_json
from medaug.errors import guarded
from medaug.params import load_params
from medaug.paths import METRICS, Candidate, EvaluateIO

cap_kernels()  # before torch loads: it fixes its kernels' instruction set then (params cpu.isa, medaug.cpu)

from medaug.evaluate import evaluate  # noqa: E402 (after the caps)


def main(model: str, variant: str, seed: str | None = None) -> str:
    c = Candidate(model, variant, None if seed is None else int(seed))
    io = EvaluateIO.at(c)
    report = evaluate.run(load_params(), c, io, mlflow_root=Path.cwd())
    write_json(METRICS / "eval" / f"{c.name}.json", headline.scores(report))
    return f"{c.stage('evaluate')}: wrote {io.out}/ and {METRICS / 'eval' / f'{c.name}.json'}: {headline.line(report)}"


if __name__ == "__main__":
    guarded(main, *sys.argv[1:4])
