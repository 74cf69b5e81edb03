"""`medaug check-lock` (run by .ci/run): a committed dvc.lock that does not match the code or params fails, naming
the stages, what changed and the command to run; data the DAG builds (absent on a fresh clone) is not a change."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.paths import ROOT
from support.process import sh
from support.project import copy_project

MAX_METRIC_COLUMNS = 40


def check_lock(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medaug.cli", "check-lock", *args], cwd=repo, capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=str(repo / "src")))


def test_a_stale_lock_fails_naming_the_stages_what_changed_and_the_fix(tmp_path):
    repo = copy_project(tmp_path / "repo", lock=True)
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    sh(["git", "init", "-q"], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "init"], repo, env)
    before = check_lock(repo)
    assert before.returncode == 0, before.stderr  # `registry` is always changed by design: no staleness
    assert "data/prepared" not in before.stderr  # built by the DAG: absent on a clone, and no change
    with open(repo / "src/medaug/llm/limits.py", "a") as f:
        f.write("\n# a code change\n")
    lock = (repo / "dvc.lock").read_text()
    orphan = lock.replace("\n  prepare:\n", "\n  pretrain@gone:\n", 1).split("\n  generate:\n")[0]
    (repo / "dvc.lock").write_text(orphan + lock[len("schema: '2.0'\nstages:"):])  # a stage no longer declared
    text = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(text.replace("  max_new_tokens: 64", "  max_new_tokens: 65"))
    after = check_lock(repo)
    assert after.returncode == 1, after.stdout + after.stderr
    lines = dict(line.split(": ", 1) for line in after.stderr.splitlines() if not line.startswith("error"))
    for stage in ("generate", "filter", "evaluate-teacher"):
        assert "src/medaug/llm/limits.py: modified" in lines[stage]
        assert "params.yaml teacher: modified" in lines[stage]
    # file-level code deps: a stage that never imports the edited module is not stale for it
    assert "prepare" not in lines and not any(s.startswith("train@") for s in lines), lines
    assert "run `dvc repro`, then commit dvc.lock, metrics/, reports/ and plots/" in after.stderr
    assert lines["pretrain@gone"] == "not in dvc.yaml"
    pruned = check_lock(repo, "--prune")  # the orphan goes, the lock is DVC's own text again; stale stays stale
    assert "removed 1 entries (pretrain@gone)" in pruned.stdout and pruned.returncode == 1
    assert (repo / "dvc.lock").read_text() == lock and "gone" not in pruned.stderr


def test_a_stage_that_reads_a_param_it_does_not_declare_fails_naming_it(tmp_path):
    """Issue 31: under MEDAUG_CHECK_PARAMS (the whole suite runs under it), `dvc repro prepare` in a copy whose
    prepare script also reads evaluate.seed fails, naming the key and the fix; the shipped script passes."""
    repo = copy_project(tmp_path / "repo")
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t", PYTHONPATH=str(repo / "src"), MEDAUG_CHECK_PARAMS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
        sh(["git", *args], repo, env)
    assert sh(["dvc", "repro", "prepare"], repo, env).returncode == 0
    script = repo / "stages/prepare.py"
    script.write_text(script.read_text().replace("    p = load_params()\n",
                                                 "    p = load_params()\n    print(p.evaluate.seed)\n"))
    r = sh(["dvc", "repro", "prepare"], repo, env, check=False)
    assert r.returncode != 0
    assert "error: dvc.yaml: stage prepare reads params it does not declare: evaluate.seed; add each under the " \
           "stage's `params:` (e.g. `- evaluate.seed`)" in r.stderr, r.stderr


def leaves(d, prefix=""):
    for k, v in d.items():
        yield from leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]


def leaf_values(d, prefix=""):
    for k, v in d.items():
        yield from leaf_values(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]


def test_dvc_exp_show_lists_at_most_40_metrics_and_nothing_volatile():
    """The committed metrics (what the default params produce: check-lock) as `dvc exp show` reads them."""
    if not (ROOT / ".git").exists():
        pytest.skip(f"{ROOT} is no git checkout: `dvc exp show` reads the committed experiments")
    r = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json", "--no-fetch"], cwd=ROOT,
                       capture_output=True, text=True, env=dict(os.environ, DVC_NO_ANALYTICS="1"))
    assert r.returncode == 0, r.stderr
    workspace = next(row for row in json.loads(r.stdout) if row["rev"] == "workspace")
    columns = [f"{path}:{key}" for path, m in workspace["data"]["metrics"].items() for key in leaves(m["data"])]
    assert 20 <= len(columns) <= MAX_METRIC_COLUMNS, "\n".join(columns)
    volatile = [c for c in columns if any(w in c for w in ("run_id", "runtime", "seconds", "time", "cache_hits", "sent"))]
    assert not volatile, volatile
    values = {c: v for path, m in workspace["data"]["metrics"].items() for c, v in leaf_values(m["data"], f"{path}:")}
    assert not {c: v for c, v in values.items() if isinstance(v, (str, bool))}, "a metric that is no number (dvc " \
        "metrics diff cannot diff it; a setting belongs to params)"
