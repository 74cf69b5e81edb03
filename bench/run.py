"""Benchmark: the default offline pipeline, stage by stage, on this machine, against issue 18's targets.

Default (`make bench`): two fresh `git clone`s of the committed project in a temp dir.
- cold: `make setup` in the first clone (its own venv, the pinned install; pip's download cache is the machine's)
  and `dvc repro` with an empty model cache, so Gemma's one-time GGUF conversion is included, as on a new machine.
  Target: setup + repro <= 12 min.
- warm: `dvc repro` in the second clone (a clean checkout: no teacher cache, no registry) with the model cache the
  cold run filled. Target: <= 6 min.
`--here` runs only the warm measurement, in this checkout (reusing ~/.cache/medaug), leaving dvc.lock and the
metrics to commit as the baseline that `dvc metrics diff` compares against. Appends the wall time of every stage,
the scores and the PASS/FAIL lines to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from roofline import commit, machine

ROOT = Path(__file__).resolve().parents[1]


def timed_repro(repo: Path, env: dict[str, str], targets: list[str] = ()) -> tuple[dict[str, float], float]:
    """Run `dvc repro [targets]` in `repo`, echoing its output; ({stage: wall seconds}, total seconds)."""
    proc = subprocess.Popen(["dvc", "repro", *targets], cwd=repo, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    start = last = time.time()
    stage, times = None, {}
    for line in proc.stdout:
        sys.stdout.write(line)
        m = re.match(r"Running stage '(.+)':", line)
        if m:
            now = time.time()
            if stage:
                times[stage] = now - last
            stage, last = m.group(1), now
    if proc.wait() != 0:
        sys.exit("dvc repro failed")
    times[stage] = time.time() - last
    return times, time.time() - start


COLD_S, WARM_S = 12 * 60, 6 * 60


def stage_table(times: dict[str, float], total: float, setup: float | None = None) -> str:
    rows = ([f"| `make setup` | {setup:.0f} |"] if setup is not None else []) + [
        f"| {name} | {secs:.0f} |" for name, secs in times.items()]
    return "| step | seconds |\n|---|---|\n" + "\n".join(rows) + f"\n| **total** | **{total:.0f}** |\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--here", action="store_true", help="only the warm run, in this checkout")
    args = ap.parse_args()
    base = dict(os.environ, DVC_NO_ANALYTICS="1", MLFLOW_DISABLE_TELEMETRY="true", PYTHONUNBUFFERED="1")
    sections, checks = [], []
    with tempfile.TemporaryDirectory(prefix="medaug-bench-") as tmp:
        if args.here:
            repo, venv = ROOT, Path(sys.executable).parent
        else:
            repo = Path(tmp) / "cold"
            subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
            base["MEDAUG_CACHE"] = str(Path(tmp) / "cache")
            start = time.time()
            subprocess.run(["make", "setup"], cwd=repo, env=base, check=True)
            setup = time.time() - start
            venv = repo / ".venv" / "bin"
            env = dict(base, PATH=f"{venv}{os.pathsep}{os.environ['PATH']}")
            times, total = timed_repro(repo, env)
            sections.append(("cold: a fresh clone, `make setup`, empty model cache", stage_table(times, total + setup,
                                                                                                   setup)))
            print(f"{sections[-1][0]}:\n{sections[-1][1]}", flush=True)
            checks.append((f"cold `make repro` (setup, conversion included) <= {COLD_S // 60} min", total + setup,
                            COLD_S))
            repo = Path(tmp) / "warm"
            subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        env = dict(base, PATH=f"{venv}{os.pathsep}{os.environ['PATH']}",
                   PYTHONPATH=str(repo / "src"))  # this checkout's code, whichever venv runs it
        times, total = timed_repro(repo, env)
        where = "this checkout" if args.here else "a second fresh clone"
        sections.append((f"warm: {where}, warm model cache", stage_table(times, total)))
        print(f"{sections[-1][0]}:\n{sections[-1][1]}", flush=True)
        checks.append((f"warm `dvc repro` from a clean checkout <= {WARM_S // 60} min", total, WARM_S))
        scores = {f.stem: json.loads(f.read_text()) for f in sorted((repo / "metrics" / "eval").glob("*.json"))}
        if (repo / "reports" / "teacher.json").exists():
            t = json.loads((repo / "reports" / "teacher.json").read_text())
            scores[f"{t['variant']} ({t['model']})"] = t
        registered = json.loads((repo / "reports" / "register.json").read_text())
    score_rows = "\n".join(f"| {name} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} |" for name, m in scores.items())
    report = (f"\n## Default offline `dvc repro`, {dt.date.today()} (commit {commit()}, "
              f"{machine()})\n\n"
              + "\n".join(f"{title}:\n\n{table}" for title, table in sections)
              + f"\n| candidate | accuracy | macro-F1 |\n|---|---|---|\n{score_rows}\n\n"
              f"Registered: {registered['candidate']} as v{registered['version']} @{registered['alias']}.\n\n"
              + "".join(f"- {'PASS' if secs <= limit else 'FAIL'}: {name} ({secs / 60:.1f} min)\n"
                        for name, secs, limit in checks))
    with open(ROOT / "bench" / "RESULTS.md", "a") as f:
        f.write(report)
    print(report)


if __name__ == "__main__":
    main()
