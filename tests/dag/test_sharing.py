"""A team shares one run (issue 16, part 6): clone A of the built pipeline registers against a real `mlflow server`
on 127.0.0.1 (sqlite backend, artifacts served by the server) and pushes its outputs to a local-directory DVC
remote; clone B, a `git clone` of A, pulls them and `dvc repro` reruns nothing (only the always-run `registry`
check, which finds A's version in the shared registry); B loads the champion through the server in a fresh
process and it answers as A's evaluate stage did."""

import json

import pytest

from support.dag import commit
from support.mlflow_server import mlflow_server
from support.process import sh, stages_run
from support.project import champion_vs_evaluate



@pytest.fixture(scope="module")
def shared(tmp_path_factory, project):
    """A (the project's clone) switched to the team's server: the `registry` check finds the new registry empty
    and `register` registers there; A commits and pushes, B clones and pulls."""
    base = tmp_path_factory.mktemp("team")
    a = project["repo"]
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        env = {**project["env"], "MLFLOW_TRACKING_URI": url}
        remote = base / "dvc-remote"
        sh(["dvc", "remote", "add", "-d", "shared", str(remote)], a, env)
        switched = sh(["dvc", "repro"], a, env)
        assert stages_run(switched.stdout) == {"registry", "register"}, switched.stdout
        commit(a, env, "a run")
        pushed = sh(["dvc", "push"], a, env)
        b = base / "b"
        sh(["git", "clone", "-q", str(a), str(b)], base, env)
        pulled = sh(["dvc", "pull"], b, env)
        env.pop("OPENAI_BASE_URL")  # B never asks the teacher: nothing of generate's reruns
        yield {"a": a, "b": b, "env": env, "remote": remote, "pushed": pushed, "pulled": pulled}


def test_a_pulled_clone_reruns_nothing(shared):
    b, env = shared["b"], shared["env"]
    assert any(shared["remote"].rglob("*")), shared["pushed"].stdout
    for path in ("data/prepared/test.jsonl", "data/filtered/kept.jsonl", "models/tiny-original-0"):
        assert (b / path).exists(), f"{path} not pulled:\n{shared['pulled'].stdout}"
    assert json.loads((b / "reports/registry.json").read_text()) == \
        json.loads((shared["a"] / "reports/registry.json").read_text())
    out = sh(["dvc", "repro"], b, env).stdout
    assert stages_run(out) == {"registry"}, out  # the always-run check; register finds A's version and stays
    assert sh(["git", "status", "--porcelain"], b, env).stdout.strip() == ""  # dvc.lock and reports unchanged


def test_the_champion_loads_through_the_server_in_a_fresh_process(shared):
    got, want = champion_vs_evaluate(shared["b"], shared["env"], "medaug-pubmedqa")
    assert got == want
