"""Nothing silent (issue 12), acceptance: SIGKILL of the whole `dvc repro` process group mid-generation, against the
real HTTP server on 127.0.0.1. The rest of issue 12: tests/integration/test_teacher_failures.py."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from medaug.llm.cache import RequestCache
from support.openai_server import AnswersThenHangs, OpenAIServer
from support.process import sh
from support.project import copy_project


def openai_project(repo: Path, per_strategy: int) -> tuple[Path, dict[str, str]]:
    """A copy of the project in a fresh git repo (nothing committed), its teacher an OpenAI-compatible endpoint
    (OPENAI_BASE_URL is the test's to set), and the environment to run DVC in."""
    copy_project(repo)
    text = (repo / "params.yaml").read_text()
    text = text.replace("  backend: local ", "  backend: openai ").replace("  model: gemma-3-270m\n",
                                                                          "  model: fake-teacher\n")
    (repo / "params.yaml").write_text(text.replace("  per_strategy: 12 ", f"  per_strategy: {per_strategy} "))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               OPENAI_API_KEY="sk-test", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    sh(["git", "init", "-q"], repo, env)
    return repo, env


# --- acceptance: SIGKILL of the whole `dvc repro` process group --------------------------------------------------


def test_killing_the_dvc_repro_process_group_mid_generation_needs_no_cleanup_and_resends_no_answer(tmp_path):
    """`dvc repro generate` in a fresh git repo; SIGKILL its whole process group (dvc and the stage) once half the
    answers are cached; a plain rerun of `dvc repro` completes and sends no request that had been answered."""
    repo, env = openai_project(tmp_path / "repo", per_strategy=10)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "init"], repo, env)
    responder = AnswersThenHangs(10)  # the rest hangs until the pipeline is dead

    with OpenAIServer(responder) as srv:
        env["OPENAI_BASE_URL"] = srv.base_url
        proc = subprocess.Popen(["dvc", "repro", "generate"], cwd=repo, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            cache = repo / ".cache/teacher.sqlite"
            for _ in range(2400):
                if cache.exists() and len(RequestCache(cache)) >= 10:
                    break
                time.sleep(0.05)
            assert len(RequestCache(cache)) >= 10
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            responder.release()
        answered_before = {k.key for k in RequestCache(cache).iter_entries()}
        seen_before = dict(srv.attempts)
        rerun = sh(["dvc", "repro", "generate"], repo, env)
    assert "Running stage 'generate'" in rerun.stdout
    m = json.loads((repo / "reports/generate.json").read_text())
    assert m["generated"] + sum(m["rejects"].values()) == 20 and m["teacher"]["cache_hits"] >= 10
    assert all(srv.attempts[p] == 1 for p in responder.answered), "an answered request was sent again"
    assert m["teacher"]["sent"] == 20 - len(answered_before) and len(seen_before) <= 10 + 4


def test_a_generate_stage_stopped_by_a_missing_key_leaves_the_committed_reports(tmp_path):
    """Issue 32: `dvc repro` deletes a stage's outputs before it runs; the generate stage stopped by a precondition
    (an openai teacher without OPENAI_API_KEY) fails with the one line and leaves its committed reports and metrics
    (cache: false, in git only, so `dvc checkout` could not bring them back) as they were: `git status` is clean."""
    repo, env = openai_project(tmp_path / "repo", per_strategy=2)
    with OpenAIServer() as srv:
        env["OPENAI_BASE_URL"] = srv.base_url
        sh(["dvc", "repro", "generate"], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "generated"], repo, env)
    committed = {p: (repo / p).read_bytes() for p in ("reports/generate.json", "metrics/generate.json")}
    del env["OPENAI_API_KEY"]
    (repo / ".cache/teacher.sqlite").unlink()  # answers to ask again (cached ones would need no key)
    r = sh(["dvc", "repro", "--force", "--single-item", "generate"], repo, env, check=False)
    assert r.returncode != 0
    assert "error: teacher.backend is 'openai' but the environment variable OPENAI_API_KEY is not set" in r.stderr
    assert sh(["git", "status", "--porcelain"], repo, env).stdout == ""
    assert {p: (repo / p).read_bytes() for p in committed} == committed
