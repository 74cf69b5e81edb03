"""The DAG tier's fork server (support.forkserver) keeps the contract of a fresh `python stages/<name>.py`: the
argv, working folder, environment, standard streams and exit status of the stage, signals forwarded both ways, and
a stage killed with its client; a script outside `stages/`, or an environment whose import-time settings differ,
gets a fresh interpreter."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import forkserver

SCRIPT = '''import os, sys, time
print("argv", sys.argv[1:], "cwd", os.path.basename(os.getcwd()), "env", os.environ.get("STAGE_VALUE"),
      "torch", "torch" in sys.modules, "main", __name__, flush=True)
print("stdin", sys.stdin.read().strip(), file=sys.stderr, flush=True)
if sys.argv[1] == "wait":
    open("pid", "w").write(str(os.getpid()))
    time.sleep(60)
if sys.argv[1] == "message":
    sys.exit("stopped: a message")
sys.exit(int(sys.argv[1]))
'''


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("forkserver")
    for script in ("stages/train.py", "stages/prepare.py", "tools/train.py"):
        (root / script).parent.mkdir(exist_ok=True)
        (root / script).write_text(SCRIPT)
    return root, forkserver.env(dict(os.environ, STAGE_VALUE="v"), root)


def run(root, env, script, arg, stdin="in"):
    return subprocess.run(["python", script if "/" in script else f"stages/{script}.py", arg], cwd=root, env=env, input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_a_model_stage_runs_forked_with_its_argv_folder_env_streams_and_exit_code(served):
    root, env = served
    r = run(root, env, "train", "3")
    assert r.returncode == 3
    assert r.stdout.strip() == f"argv ['3'] cwd {root.name} env v torch True main __main__"  # torch: preloaded
    assert r.stderr.strip() == "stdin in"
    r = run(root, env, "train", "message")
    assert r.returncode == 1 and r.stderr.strip().endswith("stopped: a message")


def test_every_stage_is_forked_and_other_scripts_or_import_settings_get_a_fresh_interpreter(served):
    root, env = served
    assert "torch True" in run(root, env, "prepare", "0").stdout  # a light stage too: its imports are the cost
    assert "torch False" in run(root, env, "tools/train.py", "0").stdout
    assert "torch False" in run(root, {**env, "HF_HUB_CACHE": str(root)}, "train", "0").stdout


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_a_signal_reaches_the_stage_and_a_killed_client_kills_it(served, how):
    root, env = served
    (root / "pid").unlink(missing_ok=True)
    proc = subprocess.Popen(["python", "stages/train.py", "wait"], cwd=root, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not (root / "pid").exists() or not (root / "pid").read_text():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    child = int((root / "pid").read_text())
    assert child != proc.pid  # the stage is the server's fork, not the client
    proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
    assert proc.wait(timeout=30) == (-signal.SIGTERM if how == "sigterm" else -signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and "Z" not in _state(child):
        assert time.monotonic() < deadline, "the stage outlived its client"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_the_server_of_a_worker_killed_without_cleanup_exits(tmp_path):
    """A pytest worker killed with -9 runs no atexit: its server notices the lost parent and exits."""
    code = ("import os, sys; sys.path.insert(0, sys.argv[1]); from support import forkserver; "
            "forkserver.env(dict(os.environ), sys.argv[2]); print(forkserver._started['pid'], flush=True); "
            "os._exit(0)")
    r = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parents[1]), str(tmp_path)],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, MEDAUG_FORKSERVER_PRELOAD=""))
    server = int(r.stdout.split()[-1])
    deadline = time.monotonic() + 30
    while Path(f"/proc/{server}").exists() and "Z" not in _state(server):
        assert time.monotonic() < deadline, "the server outlived its worker"
        time.sleep(0.2)
