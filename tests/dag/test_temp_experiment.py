"""`dvc exp run --temp` on a clone of the built pipeline: a throw-away copy under .dvc/tmp/exps/ registers into
the project's registry and reuses its teacher cache; then the register stage's side effect made visible to DVC
(the `registry` stage): a lost registry registers again, and so does another one."""

import json
import shutil
import sqlite3
import sys

import pytest

from support.dag import commit
from support.pipeline import NAME
from support.process import sh, stages_run


EXP = "alpha-0.04"


def client_of(db):
    from mlflow import MlflowClient

    store = f"sqlite:///{db}"
    return MlflowClient(tracking_uri=store, registry_uri=store)


def cached_answers(repo) -> int:
    with sqlite3.connect(repo / ".cache/teacher.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]


@pytest.fixture(scope="module")
def temp_exp(project):
    """The first run committed, then a temp experiment: a register setting (registers again, trains nothing) and a
    teacher setting that reruns every teacher stage (generate, filter, evaluate-teacher) without changing a single
    request."""
    repo, env, server = project["repo"], project["env"], project["server"]
    head = commit(repo, env, "first run")
    before = {"requests": len(server.requests), "answers": cached_answers(repo),
              "register": json.loads((repo / "reports/register.json").read_text())}
    r = sh(["dvc", "exp", "run", "--temp", "-n", EXP, "-S", "register.alpha=0.04",
            "-S", "teacher.max_concurrency=2"], repo, env)
    return {**project, "before": before, "run": r, "head": head}


def test_temp_experiment_registers_into_the_project_with_its_experiment_tags(temp_exp):
    repo, head = temp_exp["repo"], temp_exp["head"]
    ran = stages_run(temp_exp["run"].stdout)
    assert {"generate", "evaluate-teacher", "register"} <= ran and "train@tiny-original-0" not in ran, ran
    client = client_of(repo / "mlflow.db")
    (v2,) = [v for v in client.search_model_versions(f"name = '{NAME}'") if v.tags.get("dvc_exp_name") == EXP]
    want = {"git_commit": head, "dvc_exp_name": EXP, "dvc_exp_baseline_rev": head}
    assert {k: v2.tags.get(k) for k in want} == want
    exp = client.get_experiment_by_name("medaug")
    runs = client.search_runs([exp.experiment_id], f"tags.dvc_exp_name = '{EXP}'")
    stages = {run.info.run_name for run in runs}
    assert {"generate", "evaluate-teacher", f"register-{v2.tags['candidate']}", f"pipeline {EXP}"} <= stages, stages
    assert all(run.data.tags["dvc_exp_baseline_rev"] == head for run in runs)
    # the registered model's artifacts are the project's too: the experiment's copy is gone by now
    import mlflow

    got = mlflow.artifacts.download_artifacts(run_id=v2.run_id, artifact_path="predictions.json",
                                              tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    assert json.loads(open(got).read())
    # the workspace is untouched: its metrics still name the first run's version
    assert json.loads((repo / "reports/register.json").read_text()) == temp_exp["before"]["register"]


def test_temp_experiment_reuses_the_project_teacher_cache(temp_exp):
    assert len(temp_exp["server"].requests) == temp_exp["before"]["requests"], "the temp experiment paid again"
    assert cached_answers(temp_exp["repo"]) == temp_exp["before"]["answers"]


# --- the register stage's side effect, visible to DVC (the `registry` stage; last: it replaces the registry)

def version_tag(db, env, version="1", key="candidate"):
    """Asked in a fresh process: this one's MLflow keeps its connection to a store file that was deleted."""
    code = (f"from mlflow import MlflowClient; u = 'sqlite:///{db}'; "
            f"print(MlflowClient(u, u).get_model_version({NAME!r}, {version!r}).tags[{key!r}])")
    return sh([sys.executable, "-c", code], db.parent, env).stdout.strip()


def test_a_lost_registry_registers_again_and_another_registry_too(temp_exp, tmp_path):
    repo, env = temp_exp["repo"], temp_exp["env"]
    named = json.loads((repo / "reports/register.json").read_text())["version"]
    (repo / "mlflow.db").unlink()
    shutil.rmtree(repo / "mlartifacts")
    r = sh(["dvc", "repro"], repo, env)
    assert stages_run(r.stdout) == {"registry", "register"}, r.stdout
    assert "mlflow.db does not exist" in r.stdout and f"(v{named}) no longer describes it" in r.stdout
    reg = json.loads((repo / "reports/register.json").read_text())
    assert (reg["version"], reg["alias"]) == (1, "champion")
    assert version_tag(repo / "mlflow.db", env) == reg["candidate"]
    # healthy again: only the check runs, and the lock it leaves is the lock of the run that registered
    lock = (repo / "dvc.lock").read_text()
    again = sh(["dvc", "repro"], repo, env)
    assert stages_run(again.stdout) == {"registry"} and (repo / "dvc.lock").read_text() == lock
    # another registry (a team's server, here another sqlite store): register runs again, into it
    other = tmp_path / "team.db"
    switched = sh(["dvc", "repro"], repo, {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{other}"})
    assert stages_run(switched.stdout) == {"registry", "register"}, switched.stdout
    assert json.loads((repo / "reports/registry.json").read_text())["registry"] == f"sqlite:///{other}"
    assert version_tag(other, env) == reg["candidate"]
