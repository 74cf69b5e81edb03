"""Benchmark: throughput of the OpenAI-compatible teacher backend against a local server.

Starts tests/support/openai_server.py as a separate process (so it does not share the client's GIL) that answers
every request after a fixed 200 ms. For each concurrency (1, 8, 32, 64) it sends 100 x concurrency distinct prompts
(the real `new`-strategy prompt over the bundled sample abstracts, ~1.5 kB each) through
`make_teacher(...).complete()` with a fresh cache, and measures requests/s (prompts / wall time of complete()),
its share of the ideal concurrency / 0.2 s, and the client's CPU time per request. Then it reruns the
concurrency-32 prompts on the now full cache and checks through the server's GET /v1/_stats that no request
was sent. Appends a table to bench/RESULTS.md and prints it, with a PASS/FAIL line per target (>= 90% of the
ideal at concurrency 64, and at 32); exits non-zero if a request fails or the cached rerun sends anything (the
throughput targets are reported, not enforced).

A last row sends the concurrency-64 prompts through /v1/completions (`teacher.endpoint: completions`, the
base-model path), held to the same target.

Usage: `make bench` (this, then bench/run.py), or `.venv/bin/python bench/teacher.py` (under two minutes).
`--no-record` prints without appending to bench/RESULTS.md; `--concurrency 64` runs only that row (with
`--no-record` implied); `--profile FILE` writes a cProfile of the client's event loop during the rows to FILE
(it slows the client: its throughput figures are not comparable).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import replace
from itertools import cycle
from pathlib import Path

from roofline import commit, machine

from medaug.augment.strategies.base import build_prompt, load_prompt
from medaug.data.pubmedqa import from_original
from medaug.llm.teacher import make_teacher
from medaug.params import TeacherParams

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_PATH = ROOT / "src/medaug/data/sample/ori_pqal_sample.json"
LATENCY_S = 0.2
CONCURRENCY = (1, 8, 32, 64)
PROMPTS_PER_SLOT = 100  # ~20 s a row: fixed start-up costs (imports, first connections) weigh ~1%
TARGET = 0.9  # share of the ideal throughput
TARGET_CONCURRENCY = 64  # the acceptance point (issue 18); RERUN_CONCURRENCY's row is the earlier one
RERUN_CONCURRENCY = 32  # its prompts are rerun on the full cache
TARGETS = (TARGET_CONCURRENCY, RERUN_CONCURRENCY)


def make_prompts(n: int) -> list[str]:
    template, _ = load_prompt("new")
    records = cycle(from_original(SAMPLE_PATH))
    return [build_prompt(template, replace(r, contexts=[*r.contexts, f"(Item {i}.)"]))
            for i, r in zip(range(n), records)]


def start_server(tmp: Path) -> tuple[subprocess.Popen, str]:
    port_file = tmp / "server.url"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "support" / "openai_server.py"),
                             "--port-file", str(port_file), "--latency-s", str(LATENCY_S)])
    deadline = time.time() + 30
    while not port_file.exists():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            sys.exit("the OpenAI-compatible test server did not start")
        time.sleep(0.05)
    return proc, port_file.read_text().strip()


def server_requests(base_url: str) -> int:
    with urllib.request.urlopen(f"{base_url}/_stats") as resp:
        return json.load(resp)["requests"]


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def run(tmp: Path, base_url: str, concurrency: int, prompts: list[str], cache: str,
        profile: cProfile.Profile | None = None, endpoint: str = "chat") -> dict:
    """One complete() call: wall time, client CPU and the requests the server saw."""
    teacher = make_teacher(TeacherParams(backend="openai", model="fake-teacher", max_concurrency=concurrency,
                                         cache=cache, endpoint=endpoint), tmp)
    seen, cpu, start = server_requests(base_url), cpu_s(), time.perf_counter()
    if profile:
        profile.enable()
    out = teacher.complete(prompts)
    if profile:
        profile.disable()
    wall, cpu = time.perf_counter() - start, cpu_s() - cpu
    teacher.cache.close()
    failed = [c.error for c in out if c.text is None]
    if failed:
        sys.exit(f"concurrency {concurrency}: {len(failed)} of {len(prompts)} requests failed ({failed[0]}, ...)")
    return {"wall": wall, "cpu": cpu, "sent": server_requests(base_url) - seen, "cached": sum(c.cached for c in out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to bench/RESULTS.md")
    ap.add_argument("--concurrency", type=int, nargs="+", choices=CONCURRENCY, default=CONCURRENCY,
                    help="run only these rows (implies --no-record unless all four are given)")
    ap.add_argument("--profile", type=Path, help="write a cProfile (pstats file) of the client's rows here "
                    "(slows the client)")
    args = ap.parse_args()
    concurrency = sorted(set(args.concurrency))
    record = not args.no_record and tuple(concurrency) == CONCURRENCY
    profile = cProfile.Profile() if args.profile else None
    prompts = make_prompts(PROMPTS_PER_SLOT * max(concurrency))
    rows, share, rerun = [], {}, None
    with tempfile.TemporaryDirectory(prefix="medaug-bench-teacher-") as tmp_name:
        tmp = Path(tmp_name)
        server, base_url = start_server(tmp)
        os.environ.update(OPENAI_BASE_URL=base_url, OPENAI_API_KEY="bench")
        try:
            for c in concurrency:
                n = PROMPTS_PER_SLOT * c
                r = run(tmp, base_url, c, prompts[:n], f"cache-{c}.sqlite", profile)
                rps, ideal = n / r["wall"], c / LATENCY_S
                share[c] = rps / ideal
                target = ("pass" if share[c] >= TARGET else "**fail**") if c in TARGETS else ""
                rows.append(f"| {c} | {n} | {r['sent']} | {r['wall']:.2f} | {rps:.1f} | {ideal:.0f} | "
                            f"{share[c]:.1%} | {r['cpu'] / n * 1000:.2f} | {target} |")
                print(rows[-1], flush=True)
            if TARGET_CONCURRENCY in concurrency:  # the base-model path (teacher.endpoint: completions)
                c, n = TARGET_CONCURRENCY, PROMPTS_PER_SLOT * TARGET_CONCURRENCY
                r = run(tmp, base_url, c, prompts[:n], f"cache-{c}-completions.sqlite", profile, "completions")
                rps, ideal = n / r["wall"], c / LATENCY_S
                share["completions"] = rps / ideal
                rows.append(f"| {c}, /v1/completions | {n} | {r['sent']} | {r['wall']:.2f} | {rps:.1f} | {ideal:.0f} | "
                            f"{share['completions']:.1%} | {r['cpu'] / n * 1000:.2f} | "
                            f"{'pass' if share['completions'] >= TARGET else '**fail**'} |")
                print(rows[-1], flush=True)
            if RERUN_CONCURRENCY in concurrency:
                n = PROMPTS_PER_SLOT * RERUN_CONCURRENCY
                rerun = run(tmp, base_url, RERUN_CONCURRENCY, prompts[:n], f"cache-{RERUN_CONCURRENCY}.sqlite")
        finally:
            server.terminate()
            server.wait()
    if profile:
        profile.dump_stats(args.profile)
    verdicts = [f"- {'PASS' if share[c] >= TARGET else 'FAIL'}: concurrency {c} at {share[c]:.1%} of the ideal "
                f"{c / LATENCY_S:.0f} requests/s (target >= {TARGET:.0%})"
                + ("" if c == TARGET_CONCURRENCY else ", the earlier target") for c in TARGETS if c in share]
    if "completions" in share:
        verdicts.append(f"- {'PASS' if share['completions'] >= TARGET else 'FAIL'}: the completions path "
                        f"(teacher.endpoint: completions) at concurrency {TARGET_CONCURRENCY}: "
                        f"{share['completions']:.1%} of the ideal (target >= {TARGET:.0%})")
    report = (f"\n## Teacher throughput, openai backend vs local server, {dt.date.today()} (commit {commit()}, "
              f"{machine()})\n\n"
              f"`bench/teacher.py`: tests/support/openai_server.py in its own process answers every request after "
              f"{LATENCY_S * 1000:.0f} ms; fresh cache per row; requests/s = prompts / wall time of complete(); "
              f"ideal = concurrency / {LATENCY_S:g} s; target at concurrency {TARGET_CONCURRENCY} (and, earlier, "
              f"{RERUN_CONCURRENCY}): >= {TARGET:.0%} of ideal.\n\n"
              "| concurrency | prompts | requests sent | wall s | requests/s | ideal | % of ideal | "
              "client CPU ms/request | target |\n|---|---|---|---|---|---|---|---|---|\n"
              + "\n".join(rows) + "\n\n"
              + (f"Fully cached rerun of the concurrency-{RERUN_CONCURRENCY} prompts: {rerun['cached']} of {n} "
                 f"from cache, {rerun['sent']} requests sent, {rerun['wall']:.2f} s.\n\n" if rerun else "")
              + "\n".join(verdicts) + "\n")
    if record:
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.write(report)
    print(report)
    if rerun and (rerun["sent"] or rerun["cached"] != n):
        sys.exit("the fully cached rerun sent requests")


if __name__ == "__main__":
    main()
