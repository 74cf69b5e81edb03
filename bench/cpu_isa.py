"""Benchmark: what `cpu.isa: avx2` (medaug.cpu: torch, oneDNN and MKL capped at AVX2) costs against `native`, and
which bytes it changes, on this machine.

In a fresh clone of the committed project (this checkout's venv, the clone's code): `dvc repro` of the default
original candidate's training and the zero-shot scoring once to build their inputs, then the two stages again,
forced, under each setting in turn (native, avx2, native, avx2: background load falls on both alike), the
setting written to params.yaml as a user would. Reported per run: each stage's wall time, the float32 matmul
roofline of a fresh process under the same setting (roofline.matmul_gflops at Gemma-3-270M's MLP shapes: the
machine's limit the stages' matmuls run against), and digests of what the stages wrote (the adapter, the
zero-shot predictions with their log-probs, the training report with its losses). On an AVX2-only CPU the two
settings must give the same bytes; on an AVX-512 one the avx2 runs must give the bytes an AVX2-only CPU gives.

Usage: `make bench`, or `.venv/bin/python bench/cpu_isa.py [--rounds 2] [--no-write]` (about 10 minutes on 2
cores). Appends a section to bench/RESULTS.md unless --no-write.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from roofline import commit, machine
from run import timed_repro

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from medaug.cpu import caps  # noqa: E402

TRAIN, ZERO_SHOT = "train@gemma270m-original-0", "zero-shot@gemma270m"
OUTPUTS = {"adapter": "models/gemma270m-original-0/adapter_model.safetensors",
           "zero-shot predictions": "eval/gemma270m-zero-shot/predictions.jsonl",
           "train report": "reports/train/gemma270m-original-0.json"}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def roofline(isa: str) -> float:
    """Float32 matmul GFLOP/s of a fresh process with the caps of `isa` (Gemma-3-270M's MLP: 640 x 2048)."""
    code = "from roofline import matmul_gflops; print(matmul_gflops(640, 2048))"
    env = {k: v for k, v in os.environ.items() if k not in caps("avx2")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "bench", env={**env, **caps(isa)},
                         capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    venv = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if k not in caps("avx2")}  # the params decide, not this shell
    env.update(DVC_NO_ANALYTICS="1", MLFLOW_DISABLE_TELEMETRY="true", PYTHONUNBUFFERED="1",
               PATH=f"{venv}{os.pathsep}{os.environ['PATH']}")
    runs, measured = [], commit()  # what the clone holds, before this checkout moves on
    with tempfile.TemporaryDirectory(prefix="medaug-isa-") as tmp:
        repo = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        env["PYTHONPATH"] = str(repo / "src")
        timed_repro(repo, env, [TRAIN, ZERO_SHOT])  # their inputs (prepare, generate, filter, dataset)
        params = (repo / "params.yaml").read_text()
        assert params.count("  isa: avx2") == 1
        for _ in range(args.rounds):
            for isa in ("native", "avx2"):
                (repo / "params.yaml").write_text(params.replace("  isa: avx2", f"  isa: {isa}"))
                times, _ = timed_repro(repo, env, ["-f", "-s", TRAIN, ZERO_SHOT])
                runs.append({"isa": isa, "gflops": roofline(isa), "train": times[TRAIN],
                             "zero-shot": times[ZERO_SHOT],
                             **{name: digest(repo / path) for name, path in OUTPUTS.items()}})
                print(runs[-1], flush=True)
    rows = "\n".join(f"| {r['isa']} | {r['gflops']:.0f} | {r['train']:.1f} | {r['zero-shot']:.1f} | "
                     + " | ".join(f"`{r[name]}`" for name in OUTPUTS) + " |" for r in runs)
    median = {isa: {k: statistics.median(r[k] for r in runs if r["isa"] == isa) for k in ("gflops", "train",
                                                                                       "zero-shot")}
              for isa in ("native", "avx2")}
    same = {isa: all(len({r[name] for r in runs if r["isa"] == isa}) == 1 for name in OUTPUTS)
            for isa in ("native", "avx2")}
    differ = [name for name in OUTPUTS if {r[name] for r in runs if r["isa"] == "native"}
              != {r[name] for r in runs if r["isa"] == "avx2"}]
    report = (f"\n## `cpu.isa`: avx2 caps vs native kernels, {dt.date.today()} (commit {measured}, {machine()})\n\n"
              f"`dvc repro -f -s {TRAIN} {ZERO_SHOT}` in a fresh clone, the settings taking turns; the roofline is "
              f"the float32 matmul GFLOP/s of a fresh process under the same setting (640 x 2048).\n\n"
              f"| cpu.isa | matmul GFLOP/s | train s | zero-shot s | "
              + " | ".join(OUTPUTS) + " |\n|---|---|---|---|" + "---|" * len(OUTPUTS) + f"\n{rows}\n\n"
              + "".join(f"- {isa}: median train {m['train']:.1f} s, zero-shot {m['zero-shot']:.1f} s, roofline "
                        f"{m['gflops']:.0f} GFLOP/s; the same bytes in every {isa} run: {same[isa]}\n"
                        for isa, m in median.items())
              + f"- avx2 / native wall time: train {median['avx2']['train'] / median['native']['train']:.2f}x, "
                f"zero-shot {median['avx2']['zero-shot'] / median['native']['zero-shot']:.2f}x; outputs that "
                f"differ between the settings: {', '.join(differ) or 'none'}\n")
    print(report)
    if not args.no_write:
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.write(report)


if __name__ == "__main__":
    main()
