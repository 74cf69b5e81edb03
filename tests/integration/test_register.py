"""The registered champion outside this process: loaded in a fresh one, its requirements resolved by pip, and served
by `mlflow models serve`, on the registrations of the register_steps fixture (tests/conftest.py). The registry
policy and lineage: tests/unit/test_register.py."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from support.mlflow_server import free_port
from support.register import NAME, TEST


def test_the_served_model_imports_nothing_its_requirements_leave_out(register_steps, tmp_path):
    """Load and ask the champion in a fresh process, then read the import statements of every medaug module it
    loaded: each third-party module they name that the process imported belongs to a distribution in the model's
    requirements.txt (a tiny base never imports the Gemma package, so its model does not require it)."""
    import mlflow

    root = register_steps["root"]
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/1", dst_path=str(tmp_path)))
    script = f"""
import ast, json, sys, importlib.metadata as md
import mlflow.pyfunc
m = mlflow.pyfunc.load_model({str(local)!r})
m.predict([{{"question": "Is it?", "contexts": ["a b"]}}])
dists = md.packages_distributions()
names = set()
for mod in list(sys.modules.values()):
    path = getattr(mod, "__file__", None) or ""
    if not (getattr(mod, "__name__", "").startswith("medaug") and path.endswith(".py")):
        continue
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names |= {{a.name.split(".")[0] for a in node.names}}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
print(json.dumps({{n: dists[n] for n in names if n in dists and n in sys.modules and n != "medaug"}}))
"""
    env = dict(os.environ, MEDAUG_CACHE=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    imported = json.loads(done.stdout.strip().splitlines()[-1])  # {module: the distributions that provide it}
    required = {r.split("==")[0].lower().replace("_", "-") for r in (local / "requirements.txt").read_text().split()
                if "==" in r}
    missing = {n: ds for n, ds in imported.items() if not {d.lower().replace("_", "-") for d in ds} & required}
    assert {"torch", "transformers", "peft"} <= set(imported) and not missing, missing


def test_pip_resolves_the_registered_requirements_from_pypi_alone(register_steps, tmp_path):
    """`pip install --dry-run` of the model's requirements.txt against PyPI only (no local index, no constraints,
    no installed packages): what a fresh serving machine or `mlflow models build-docker` does."""
    import mlflow

    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError as e:
        pytest.skip(f"pypi.org is not reachable from here ({e}): the dry run needs the real index")
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/1/requirements.txt", dst_path=str(tmp_path)))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--isolated", "--ignore-installed",
                           "--quiet", "--index-url", "https://pypi.org/simple", "-r", str(local)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def post(port, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())["predictions"]


def test_served_champion_answers_as_the_evaluate_stage(register_steps, register_evaluated, tmp_path):
    root, want = register_steps["root"], register_evaluated

    port = free_port()
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}", MLFLOW_DISABLE_TELEMETRY="true",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")  # uvicorn, from the venv
    log = tmp_path / "serve.log"
    with open(log, "w") as f:
        server = subprocess.Popen(["mlflow", "models", "serve", "-m", f"models:/{NAME}@champion", "--env-manager",
                                   "local", "-h", "127.0.0.1", "-p", str(port)], cwd=root, env=env,
                                  stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True)  # its own process group: uvicorn goes with it
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"`mlflow models serve` did not answer /ping on port {port} "
                                f"({'exited ' + str(server.returncode) if server.poll() is not None else 'timeout'}):"
                                f"\n{log.read_text()[-4000:]}")
                time.sleep(0.5)
        rows = [{"question": r.question, "contexts": r.contexts} for r in TEST]
        assert post(port, {"inputs": rows}) == want
        assert post(port, {"inputs": [{"question": r.question, "context": " ".join(r.contexts)} for r in TEST]}) \
            == want
        with pytest.raises(urllib.error.HTTPError) as e:  # the signature is typed: `inputs` is the one payload
            post(port, {"dataframe_records": rows})
        assert e.value.code == 400 and "with 'inputs' key" in e.value.read().decode()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_medaug_predict_reads_stdin_and_names_what_the_registry_holds(register_steps, register_evaluated):
    """Issue 32: `medaug predict --input -` answers the rows piped in as the evaluate stage does; a mistyped alias,
    a missing version or model name is one error line naming the aliases, versions or models there are (MLflow's
    own error is a 50-line traceback)."""
    root = register_steps["root"]
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}", MLFLOW_DISABLE_TELEMETRY="true")
    rows = "".join(json.dumps({"question": r.question, "contexts": r.contexts}) + "\n" for r in TEST)

    def predict(uri: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(Path(sys.executable).parent / "medaug"), "predict", "--model", uri, "--input", "-"],
                              cwd=root, env=env, input=rows, capture_output=True, text=True, timeout=300)

    r = predict(f"models:/{NAME}@champion")
    assert r.returncode == 0, r.stderr[-3000:]
    assert [json.loads(line)["prediction"] for line in r.stdout.splitlines()] == register_evaluated
    held = "(aliases: @challenger (v4), @champion (v5); versions: 1, 2, 3, 4, 5)"
    for uri, want in ((f"models:/{NAME}@champoin", f"{NAME} has no alias 'champoin' {held}"),
                      (f"models:/{NAME}/9", f"{NAME} has no version '9' {held}"),
                      ("models:/medaug-pubmeqa@champion", "no registered model 'medaug-pubmeqa' in ")):
        r = predict(uri)
        errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
        assert r.returncode == 1 and r.stdout == "" and errors == r.stderr.splitlines()[-1:], r.stderr[-3000:]
        assert errors[0].startswith(f"error: {uri}: {want}"), errors
    assert errors[0].endswith(f"(registered: {NAME})")
