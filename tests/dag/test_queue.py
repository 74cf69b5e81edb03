"""Two DVC queue workers at once (issue 31): two queued experiments on a clone of the built pipeline, run side by
side by `dvc queue start -j 2`, each asking the teacher new requests (another k of the few-shot teacher baseline) and
registering (another register.alpha), all into the project's one teacher cache and one sqlite MLflow registry."""

import json
import sqlite3
import time

from support.dag import commit
from support.pipeline import NAME
from support.process import sh

SHOTS = (1, 5)  # the built pipeline asks 3; two experiments, one per worker, at once
ALPHA = {k: f"0.0{i}" for i, k in enumerate(SHOTS, 1)}  # the built pipeline's is 0.05: each registers again


def test_two_queue_workers_share_the_teacher_cache_and_the_registry(project):
    from mlflow import MlflowClient

    repo, env, server = project["repo"], project["env"], project["server"]
    head = commit(repo, env, "first run")
    with sqlite3.connect(repo / ".cache/teacher.sqlite") as db:
        answers_before = db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    asked_before = len(server.requests)
    for k in SHOTS:
        sh(["dvc", "exp", "run", "--queue", "-n", f"shots-{k}", "-S", f"evaluate.teacher_shots={k}",
            "-S", f"register.alpha={ALPHA[k]}"], repo, env)
    sh(["dvc", "queue", "start", "-j", "2"], repo, env)
    # wait: each experiment that succeeds leaves a git ref (a cheap look, every second); `dvc queue status` (a
    # DVC process, ~1.5 s of CPU) only every 15 s, for one that failed
    deadline, polls = time.monotonic() + 600, 0
    while True:
        refs = sh(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo, env).stdout
        if all(f"/shots-{k}\n" in refs + "\n" for k in SHOTS):
            break
        polls += 1
        if polls % 15 == 0 and not any(w in sh(["dvc", "queue", "status"], repo, env).stdout
                                       for w in ("Queued", "Running")):
            break
        assert time.monotonic() < deadline, refs
        time.sleep(1)
    status = sh(["dvc", "queue", "status"], repo, env).stdout
    deadline = time.monotonic() + 60
    while any(word in status for word in ("Queued", "Running")):  # refs written, the task not yet closed
        assert time.monotonic() < deadline, status
        time.sleep(1)
        status = sh(["dvc", "queue", "status"], repo, env).stdout
    sh(["dvc", "queue", "stop"], repo, env, check=False)
    logs = {k: sh(["dvc", "queue", "logs", f"shots-{k}"], repo, env, check=False) for k in SHOTS}
    for k, log in logs.items():
        assert "database is locked" not in log.stdout + log.stderr, log.stdout[-3000:]
    assert status.count("Success") == len(SHOTS), status

    # the teacher was asked each new request once, and the project's cache holds each answer once
    new = [json.dumps(r["messages"], sort_keys=True) for r in server.requests[asked_before:]]
    assert new and len(new) == len(set(new))
    with sqlite3.connect(repo / ".cache/teacher.sqlite") as db:
        answers, keys = db.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM requests").fetchone()
    assert answers == keys == answers_before + len(new)

    # every experiment registered one version into the project's registry, with its experiment's lineage
    store = f"sqlite:///{repo / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    versions = {v.tags.get("dvc_exp_name"): v for v in client.search_model_versions(f"name = '{NAME}'")}
    assert {f"shots-{k}" for k in SHOTS} <= set(versions), sorted(map(str, versions))
    for k in SHOTS:
        v = versions[f"shots-{k}"]
        assert (v.tags["git_commit"], v.tags["dvc_exp_baseline_rev"]) == (head, head)
        run = client.get_run(v.run_id)
        assert run.data.params["register.alpha"] == ALPHA[k]
    assert sorted(int(v.version) for v in versions.values()) == list(range(1, len(SHOTS) + 2))
