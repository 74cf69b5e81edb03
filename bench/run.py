"""Benchmark: the default offline pipeline, stage by stage, on this machine.

Clones the committed project into a temp dir, runs `dvc repro` there with a fresh model cache (so Gemma's
one-time GGUF conversion is included, as on a new machine), and appends the wall time of every stage and the
scores to bench/RESULTS.md. Usage: `make bench` (or `python bench/run.py --keep-cache` to reuse ~/.cache/medaug;
`--here` runs in this checkout instead of a clone, leaving dvc.lock and the metrics to commit as the baseline
that `dvc metrics diff` compares against).
"""

from __future__ import annotations

import argparse
import json
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep-cache", action="store_true", help="reuse the user's model cache (no conversion)")
    ap.add_argument("--here", action="store_true", help="run in this checkout (implies --keep-cache)")
    args = ap.parse_args()
    args.keep_cache |= args.here
    with tempfile.TemporaryDirectory(prefix="medaug-bench-") as tmp:
        repo = ROOT if args.here else Path(tmp) / "project"
        if not args.here:
            subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                   DVC_NO_ANALYTICS="1", MLFLOW_DISABLE_TELEMETRY="true", PYTHONUNBUFFERED="1",
                   PYTHONPATH=str(repo / "src"))  # the clone's code, not the editable install's working tree
        if not args.keep_cache:
            env["MEDAUG_CACHE"] = str(Path(tmp) / "cache")
        times, total = timed_repro(repo, env)
        scores = {f.stem: json.loads(f.read_text()) for f in sorted((repo / "metrics" / "eval").glob("*.json"))}
        if (repo / "metrics" / "teacher.json").exists():
            t = json.loads((repo / "metrics" / "teacher.json").read_text())
            scores[f"{t['variant']} ({t['model']})"] = t
        registered = json.loads((repo / "metrics" / "register.json").read_text())
    rows = "\n".join(f"| {name} | {secs:.0f} |" for name, secs in times.items())
    score_rows = "\n".join(f"| {name} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} |" for name, m in scores.items())
    where = "this checkout" if args.here else "a fresh clone"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    report = (f"\n## Default offline `dvc repro`, {dt.date.today()} (commit {commit.strip()}, {os.cpu_count()} cores, "
              f"{platform.machine()}, {where}, {'warm' if args.keep_cache else 'fresh'} model cache)\n\n"
              f"| stage | seconds |\n|---|---|\n{rows}\n| **total** | **{total:.0f}** |\n\n"
              f"| candidate | accuracy | macro-F1 |\n|---|---|---|\n{score_rows}\n\n"
              f"Registered: {registered['candidate']} as v{registered['version']} @{registered['alias']}.\n")
    with open(ROOT / "bench" / "RESULTS.md", "a") as f:
        f.write(report)
    print(report)


if __name__ == "__main__":
    main()
