"""A team shares one run (issue 16, part 6): clone A runs the DAG against a real `mlflow server` on 127.0.0.1
(sqlite backend, artifacts served by the server) and pushes its outputs to a local-directory DVC remote; clone B,
a `git clone` of A, pulls them and `dvc repro` reruns nothing (only the always-run `registry` check, which finds
A's version in the shared registry); B loads the champion through the server in a fresh process and it answers
as A's evaluate stage did."""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from ruamel.yaml import YAML

from openai_server import OpenAIServer, pubmedqa_responder
from test_pipeline_e2e import champion_vs_evaluate, copy_project, git_repo, sh, stages_run, tiny


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on 127.0.0.1: a sqlite backend and a local artifact root it serves (clients never see the
    path, as with a team's server)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(root / "server.log", "w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port",
                             str(port), "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                             "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(30)
    log.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory, mlflow_server):
    base = tmp_path_factory.mktemp("team")
    a = copy_project(base / "a")
    params = tiny(YAML(typ="safe", pure=True).load((a / "params.yaml").read_text()), ["original", "augmented"],
                  max_steps=4)
    params["generate"]["per_strategy"] = 6
    (a / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = git_repo(a, tmp_path_factory.getbasetemp(), "sk-test-team")
    env["MLFLOW_TRACKING_URI"] = mlflow_server
    remote = base / "dvc-remote"
    sh(["dvc", "remote", "add", "-d", "shared", str(remote)], a, env)
    with OpenAIServer(pubmedqa_responder) as server:
        env["OPENAI_BASE_URL"] = server.base_url
        sh(["dvc", "repro"], a, env)
    sh(["git", "add", "-A"], a, env)
    sh(["git", "commit", "-qm", "a run"], a, env)
    pushed = sh(["dvc", "push"], a, env)
    b = base / "b"
    sh(["git", "clone", "-q", str(a), str(b)], base, env)
    pulled = sh(["dvc", "pull"], b, env)
    env.pop("OPENAI_BASE_URL")  # B never asks the teacher: nothing of generate's reruns
    return {"a": a, "b": b, "env": env, "remote": remote, "pushed": pushed, "pulled": pulled}


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
