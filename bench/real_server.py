"""Parity check (issue 33): the openai backend against `transformers serve` (the pinned transformers' serving extra)
serving the converted Gemma-3-270M, a base model without a chat template, next to the local backend, in one run.

At temperature 0, on the default run's own generate requests (params.yaml as committed, the train split the prepare
stage makes, in a temporary folder): the local backend, then the openai backend with `teacher.endpoint: auto`
against the server (its chat requests crash, one probe of /v1/completions moves it to completions). Reported: the
items each keeps, whether records and rejects (with every raw reply) are identical, requests, failed requests and
tokens, wall times; then `evaluate-teacher` (3-shot) through the server on the 60 sample test questions: how many
were scored and how many requests failed. Appends a section to bench/RESULTS.md (--no-write: stdout only).
Targets: identical records and rejects; every test question scored with no failed request.

    .venv/bin/python bench/real_server.py      # about 7 minutes on 2 cores (the server answers one request at a time)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from roofline import commit, machine

ROOT = Path(__file__).resolve().parents[1]


def start_server(model: str, log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).absolute().parent / "transformers"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(log.parent / "hf")}
    proc = subprocess.Popen([str(exe), "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
                             "--dtype", "float32", model], stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"transformers serve did not come up:\n{log.read_text()[-3000:]}")


def outputs(root: Path) -> tuple[list[dict], list[tuple[str, list[str]]]]:
    """(records less their `teacher` field, each reject's reason and raw replies)."""
    lines = lambda name: (root / "data/generated" / name).read_text().splitlines()  # noqa: E731
    return ([{k: v for k, v in json.loads(x).items() if k != "teacher"} for x in lines("generated.jsonl")],
            [(r["reason"], r["replies"]) for r in map(json.loads, lines("rejects.jsonl"))])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-write", action="store_true", help="print only, do not append to bench/RESULTS.md")
    args = ap.parse_args()

    from medaug.augment.generate import run as generate
    from medaug.data import prepare
    from medaug.evaluate import teacher_baseline
    from medaug.models import resolve
    from medaug.params import load_params, parse_params
    from medaug.paths import GenerateIO, TeacherIO

    work = Path(tempfile.mkdtemp(prefix="bench-real-server-"))
    base = load_params(ROOT / "params.yaml")
    prepare.run(base, ROOT, work / "prepared", work / "prepared" / "prepare.json")
    model = resolve("gemma-3-270m")
    proc, url = start_server(model, work / "serve.log")
    os.environ.update(OPENAI_BASE_URL=url, OPENAI_API_KEY="unused")
    gen = {"strategies": base.generate.strategies, "per_strategy": base.generate.per_strategy,
           "seed": base.generate.seed}
    sides = {"local": {"backend": "local", "model": "gemma-3-270m", "temperature": 0},
             "served": {"backend": "openai", "model": model, "temperature": 0, "endpoint": "auto",
                        "max_concurrency": 4, "max_attempts": 1}}
    got, rows = {}, []
    try:
        for name, teacher in sides.items():
            root = work / name
            shutil.copytree(work / "prepared", root / "data/prepared")
            p = parse_params({"teacher": teacher, "generate": gen}, ROOT)
            t0 = time.perf_counter()
            m = generate(p, root, GenerateIO.at(root))
            rows.append((name, time.perf_counter() - t0, m))
            got[name] = outputs(root)
        root = work / "served"
        p = parse_params({"teacher": sides["served"]}, ROOT)
        t0 = time.perf_counter()
        ev = teacher_baseline.run(p, root, TeacherIO(root / "data/prepared/test.jsonl", root / "eval/teacher",
                                                     root / "metrics/teacher.json", root / "plots/c.json",
                                                     root / "plots/pc.json", root / "data/prepared/train.jsonl"))
        ev_s = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(30)
    same_records, same_rejects = (got["local"][i] == got["served"][i] for i in (0, 1))
    n_test = sum(1 for _ in (work / "prepared/test.jsonl").open())
    ok = same_records and same_rejects and ev["n"] == n_test and ev["usage"]["failed"] == 0
    lines = [f"## Real server: `transformers serve` (Gemma-3-270M, no chat template) vs the local backend "
             f"({dt.date.today()}, {commit()})", "",
             f"Machine: {machine()}. transformers serve --device cpu --dtype float32, temperature 0, the default "
             f"run's generate requests ({gen['per_strategy']} per strategy: {', '.join(gen['strategies'])}).", "",
             "| side | wall s | requests | failed | tokens in+out | kept | rejects |", "|---|---|---|---|---|---|---|"]
    for name, secs, m in rows:
        t = m["teacher"]
        lines.append(f"| {name} | {secs:.1f} | {t['requests']} | {t['failed']} | {t['input_tokens']:,}+"
                     f"{t['output_tokens']:,} | {m['generated']} | {m['rejects']} |")
    lines += ["", f"- Same records: {same_records}; same rejects, raw replies included: {same_rejects}.",
              f"- evaluate-teacher through the server (3-shot, endpoint auto): {ev['n']} of {n_test} test questions "
              f"scored, {ev['usage']['failed']} failed requests, accuracy {ev['accuracy']:.3f}, {ev_s:.1f} s.",
              f"- {'PASS' if ok else 'FAIL'}: identical items, and every question scored with no failed request.",
              ""]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        with (ROOT / "bench/RESULTS.md").open("a") as f:
            f.write("\n" + text)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
