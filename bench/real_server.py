"""Parity check (issue 33): the openai backend against `transformers serve` (the pinned transformers' serving extra)
serving the converted Gemma-3-270M, a base model without a chat template, next to the local backend, in one run.

At temperature 0, on the default run's own generate requests (params.yaml as committed, the train split the prepare
stage makes, in a temporary folder): the local backend, then the openai backend with `teacher.endpoint: auto`
against the server (its chat requests crash, one probe of /v1/completions moves it to completions). Reported: the
items each keeps, whether records and rejects (with every raw reply) are identical, requests, failed requests and
tokens, wall times; then `evaluate-teacher` (3-shot) through the server on the 60 sample test questions: how many
were scored and how many requests failed. Appends a section to bench/RESULTS.md (--no-write: stdout only).
Targets: identical records and rejects; every test question scored with no failed request.

Then throughput: the generate stage's 24 first requests (the committed params, temperature 0.7), answered by the
local backend and by `transformers serve --continuous-batching` through /v1/completions with all 24 in flight, in
the same run: generated tokens per second of each (the server's own usage), with the matmul roofline measured here.

    .venv/bin/python bench/real_server.py [--part parity|throughput]   # about 10 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from roofline import commit, machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.transformers_server import TransformersServer  # noqa: E402  (the tests' launcher)

ROOT = Path(__file__).resolve().parents[1]


def outputs(root: Path) -> tuple[list[dict], list[tuple[str, list[str]]]]:
    """(records less their `teacher` field, each reject's reason and raw replies)."""
    lines = lambda name: (root / "data/generated" / name).read_text().splitlines()  # noqa: E731
    return ([{k: v for k, v in json.loads(x).items() if k != "teacher"} for x in lines("generated.jsonl")],
            [(r["reason"], r["replies"]) for r in map(json.loads, lines("rejects.jsonl"))])


def throughput(work: Path) -> list[str]:
    """The generate stage's first requests through the local backend and through `transformers serve
    --continuous-batching` (all in flight): generated tokens/s of each, measured in this run."""
    from medaug.augment.generate import plan_split
    from medaug.llm.teacher import Request, make_teacher
    from medaug.models import resolve
    from medaug.params import load_params
    from roofline import matmul_gflops

    p = load_params(ROOT / "params.yaml")
    jobs = plan_split(p, ROOT, work / "prepared")
    reqs = [Request.user(j.prompt(), j.sample, j.schema) for j in jobs]
    model = resolve(p.teacher.model)
    # the KV cache sized for a CPU: with its GPU-sized defaults the server took 13.8 GB and answered none of the
    # 24 requests within 60 s here
    server = TransformersServer(model, work / "serve-cb.log", "--continuous-batching", "--cb-num-blocks", "256",
                                "--cb-block-size", "32", "--cb-max-batch-tokens", "2048")
    rows, rates, walls = [], {}, []
    with server as url:
        os.environ.update(OPENAI_BASE_URL=url, OPENAI_API_KEY="unused")
        sides = {"local backend (teacher.batch_size 32)": p.teacher,
                 f"transformers serve --continuous-batching, {len(reqs)} in flight": type(p.teacher)(
                     **{**vars(p.teacher), "backend": "openai", "model": model, "endpoint": "completions",
                        "max_concurrency": len(reqs), "max_attempts": 1, "timeout_s": 900})}
        for name, tp in sides.items():
            tp.cache = str(work / f"cache-{len(rows)}.sqlite")
            teacher = make_teacher(tp, work)
            t0 = time.perf_counter()
            out = teacher.complete(reqs)
            secs = time.perf_counter() - t0
            tokens = sum(c.output_tokens for c in out if c.text is not None)
            failed = sum(c.text is None for c in out)
            rates[name] = tokens / secs
            walls.append(secs)
            rows.append(f"| {name} | {len(reqs)} | {failed} | {tokens:,} | {secs:.1f} | {tokens / secs:.1f} |")
    local, served = rates.values()
    gemma = (640, 2048)  # Gemma-3-270M hidden size and MLP width: the roofline's matmul shape
    lines = ["", f"Throughput (temperature {p.teacher.temperature}, the generate stage's first requests, fp32; the "
             f"fp32 matmul roofline at Gemma-3-270M's MLP shape measured here: "
             f"{matmul_gflops(*gemma):.0f} GFLOP/s):", "",
             "| side | requests | failed | generated tokens | wall s | tokens/s |", "|---|---|---|---|---|---|",
             *rows, "", f"- The local backend generates {local / served:.1f}x the tokens/s of transformers serve with "
             f"continuous batching on the same requests, and answers them in {walls[1] / walls[0]:.1f}x less time: "
             f"a JSON reply leaves its batch the step its object is complete, while the server's stop strings "
             f"cannot say that, so it runs each to max_new_tokens (the client then cuts it the same way).", ""]
    return lines


def parity(work: Path, base) -> tuple[list[str], bool]:
    """Generate through the local backend and through `transformers serve` (endpoint auto), temperature 0; then
    evaluate-teacher through the server."""
    from medaug.augment.generate import run as generate
    from medaug.evaluate import teacher_baseline
    from medaug.models import resolve
    from medaug.params import parse_params
    from medaug.paths import GenerateIO, TeacherIO

    model = resolve("gemma-3-270m")
    server = TransformersServer(model, work / "serve.log")
    gen = {"strategies": base.generate.strategies, "per_strategy": base.generate.per_strategy,
           "seed": base.generate.seed}
    sides = {"local": {"backend": "local", "model": "gemma-3-270m", "temperature": 0},
             "served": {"backend": "openai", "model": model, "temperature": 0, "endpoint": "auto",
                        "max_concurrency": 4, "max_attempts": 1}}
    got, rows = {}, []
    with server as url:
        os.environ.update(OPENAI_BASE_URL=url, OPENAI_API_KEY="unused")
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
    same_records, same_rejects = (got["local"][i] == got["served"][i] for i in (0, 1))
    n_test = sum(1 for _ in (work / "prepared/test.jsonl").open())
    ok = same_records and same_rejects and ev["n"] == n_test and ev["usage"]["failed"] == 0
    lines = [f"transformers serve --device cpu --dtype float32, temperature 0, the default run's generate requests "
             f"({gen['per_strategy']} per strategy: {', '.join(gen['strategies'])}).", "",
             "| side | wall s | requests | failed | tokens in+out | kept | rejects |", "|---|---|---|---|---|---|---|"]
    for name, secs, m in rows:
        t = m["teacher"]
        lines.append(f"| {name} | {secs:.1f} | {t['requests']} | {t['failed']} | {t['input_tokens']:,}+"
                     f"{t['output_tokens']:,} | {m['generated']} | {m['rejects']} |")
    lines += ["", f"- Same records: {same_records}; same rejects, raw replies included: {same_rejects}.",
              f"- evaluate-teacher through the server (3-shot, endpoint auto): {ev['n']} of {n_test} test questions "
              f"scored, {ev['usage']['failed']} failed requests, accuracy {ev['accuracy']:.3f}, {ev_s:.1f} s.",
              f"- {'PASS' if ok else 'FAIL'}: identical items, and every question scored with no failed request.", ""]
    return lines, ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-write", action="store_true", help="print only, do not append to bench/RESULTS.md")
    ap.add_argument("--part", choices=["all", "parity", "throughput"], default="all")
    args = ap.parse_args()

    from medaug.data import prepare
    from medaug.params import load_params

    work = Path(tempfile.mkdtemp(prefix="bench-real-server-"))
    base = load_params(ROOT / "params.yaml")
    prepare.run(base, ROOT, work / "prepared", work / "prepared" / "prepare.json")
    lines = [f"## Real server: `transformers serve` (Gemma-3-270M, no chat template) vs the local backend "
             f"({dt.date.today()}, {commit()})", "", f"Machine: {machine()}.", ""]
    ok = True  # parity has targets; throughput is reported
    if args.part in ("all", "parity"):
        more, ok = parity(work, base)
        lines += more
    if args.part in ("all", "throughput"):
        lines += throughput(work)
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        with (ROOT / "bench/RESULTS.md").open("a") as f:
            f.write("\n" + text)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
