"""A fork server for the DAG tier's stages: the torch stack imported once per pytest worker, each stage a fork.

Every DVC stage is a fresh process, and most of its cost is imports: torch, transformers, peft and MLflow take
about 7-8 s of a 10-12 s train, evaluate or register stage of a test DAG on 2 AVX-512 cores, MLflow alone 3 s of
the `registry` check, openai and the teacher's stack 5 s of a generate stage, paid again by every stage of every
test DAG. Here a server process per pytest worker imports those libraries once (no medaug module: each stage
imports the project's own code itself) and forks a child for each stage; the child takes the stage's argv, working
folder, environment and standard streams and runs its script as `python stages/<name>.py` would (runpy,
`__main__`), so a stage costs its own work (train 12 s -> 4 s, registry 3 s -> 0.3 s).

How a stage reaches it: `env()` puts a folder first on the test's PATH whose `python` is this file's client. DVC
runs `python stages/train.py ...` through it; the client hands any script of a `stages/` folder to the server with
its stdin/stdout/stderr (SCM_RIGHTS), forwards SIGINT/SIGTERM/SIGHUP to the child, and exits as the child did (its
code, or death by the same signal); a child whose client dies is killed (a test that kills `dvc repro`'s process
group mid-generation kills the client, and the server kills its stage). Anything else is `exec`ed as the real
interpreter, unchanged: other scripts, `-c`, `-m`, and any environment whose import-time settings (FINGERPRINT:
HF_*, TORCH*, OMP_*, PYTHON*, ...) differ from the server's, since a library reads those when it is imported.
What a fork cannot give a stage: import-time warnings printed a second time, and a fresh hash seed.
tests/integration/test_forkserver.py checks the contract; the integration tier still runs stage scripts in plain
fresh processes (test_freshness, test_extension_points).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys

PREFIXES = ("HF_", "HUGGINGFACE", "TRANSFORMERS", "TORCH", "PYTORCH", "OMP_", "MKL", "KMP_", "ONEDNN", "DNNL",
            "ATEN_", "CUDA", "NVIDIA", "TOKENIZERS", "PYTHON", "MLFLOW_", "TQDM", "XDG_", "HOME", "LANG", "LC_",
            "TMPDIR", "DATASETS", "PEFT", "ACCELERATE")
LAZY = {"MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID",
        "MLFLOW_EXPERIMENT_NAME"}  # read by MLflow when a call needs them, never at import
PRELOAD = ["torch", "transformers", "transformers.modeling_utils", "transformers.trainer", "peft", "datasets",
           "scipy.stats", "mlflow", "mlflow.pyfunc", "openai", "tqdm",
           # MLflow imports its sqlite stores (SQLAlchemy, alembic) when a stage first opens mlflow.db: 0.9 s of a
           # stage's 1.2 s of tracking calls (start a run, log params, metrics, an artifact, a table), 0.3 s after
           "mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.sqlalchemy_store"]
SOCKET_ENV = "MEDAUG_FORKSERVER"


def fingerprint(env: dict[str, str]) -> str:
    """The import-time settings of an environment: a stage whose settings differ runs in a fresh interpreter."""
    return json.dumps(sorted((k, v) for k, v in env.items() if k.startswith(PREFIXES) and k not in LAZY))


def _routed(args: list[str]) -> bool:
    if not args or not args[0].endswith(".py"):
        return False
    return args[0].replace(os.sep, "/").rsplit("/", 2)[-2:-1] == ["stages"]


# ---------------------------------------------------------------------------------------------------- the client

def client(args: list[str]) -> None:
    """`python <args>` as the shim on PATH: through the server when the stage is routed and it answers, else the
    real interpreter (this one, sys.executable) in place."""
    path = os.environ.get(SOCKET_ENV)
    conn = None
    if path and _routed(args):
        try:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(path)
            body = json.dumps({"argv": args, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
            socket.send_fds(conn, [struct.pack("!Q", len(body))], [0, 1, 2])
            conn.sendall(body)
            if conn.recv(1) != b"R":  # "N": another fingerprint
                conn.close()
                conn = None
        except OSError:
            conn = None
    if conn is None:
        os.execv(sys.executable, [sys.executable, *args])

    def forward(signum, _frame):
        try:
            conn.sendall(b"S" + bytes([signum]))
        except OSError:
            pass

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, forward)
    status = b""
    while len(status) < 4:
        try:
            chunk = conn.recv(4 - len(status))
        except InterruptedError:
            continue
        if not chunk:  # the server died before it could send the stage's status
            os.write(2, b"forkserver: the server went away before the stage ended\n")
            os._exit(1)
        status += chunk
    raw = struct.unpack("!i", status)[0]
    if os.WIFSIGNALED(raw):
        signal.signal(os.WTERMSIG(raw), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(raw))
    os._exit(os.waitstatus_to_exitcode(raw))


# ---------------------------------------------------------------------------------------------------- the server

def _recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    head, fds, _flags, _addr = socket.recv_fds(conn, 8, 3)
    size, body = struct.unpack("!Q", head)[0], b""
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ConnectionError("client went away")
        body += chunk
    return json.loads(body), fds


def _child(conn: socket.socket, request: dict, fds: list[int]) -> None:
    """In the fork: become the stage process and run its script; never returns."""
    import atexit
    import runpy
    import threading
    import traceback

    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = list(request["argv"])
        sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))

        def watch() -> None:  # the client's signals; its death (EOF) kills the stage
            while True:
                try:
                    msg = conn.recv(2)
                except OSError:
                    msg = b""
                if len(msg) == 2 and msg[:1] == b"S":
                    os.kill(os.getpid(), msg[1])
                    continue
                os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=watch, daemon=True).start()
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, int) and e.code is not None:
                print(e.code, file=sys.stderr)
        except KeyboardInterrupt:
            traceback.print_exc()
            code = 130
        except BaseException:
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def serve(path: str) -> None:
    """Import PRELOAD, then fork a child per routed request on the unix socket `path`, and send each client its
    child's wait status; runs until killed, or until the pytest worker that started it is gone (a worker killed
    with -9 runs no atexit). Single-threaded: children are watched through pidfds."""
    import importlib
    import select

    mine, before = fingerprint(dict(os.environ)), dict(os.environ)
    preload = PRELOAD if "MEDAUG_FORKSERVER_PRELOAD" not in os.environ else \
        os.environ["MEDAUG_FORKSERVER_PRELOAD"].split()  # a test of the server itself needs none
    for name in preload:
        importlib.import_module(name)
    # what the imports set (TORCHINDUCTOR_CACHE_DIR, MLflow's telemetry session), as a fresh stage would have it
    added = {k: v for k, v in os.environ.items() if before.get(k) != v}
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    listener.listen(64)
    os.rename(path + ".tmp", path)  # ready: the socket appears only now
    children: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, client connection)
    parent = os.getppid()
    while True:
        ready, _, _ = select.select([listener, *children], [], [], 5.0)
        if not ready and os.getppid() != parent:
            os._exit(0)
        for fd in ready:
            if fd is listener:
                conn, _ = listener.accept()
                try:
                    request, fds = _recv_request(conn)
                except (OSError, ValueError, ConnectionError):
                    conn.close()
                    continue
                if fingerprint(request["env"]) != mine:
                    for f in fds:
                        os.close(f)
                    conn.sendall(b"N")
                    conn.close()
                    continue
                conn.sendall(b"R")
                pid = os.fork()
                if pid == 0:
                    request["env"] = {**added, **request["env"]}
                    listener.close()
                    for pidfd, (_, other) in children.items():
                        os.close(pidfd)
                        other.close()
                    _child(conn, request, fds)
                for f in fds:
                    os.close(f)
                children[os.pidfd_open(pid)] = (pid, conn)
            else:
                pid, conn = children.pop(fd)
                _, raw = os.waitpid(pid, 0)
                os.close(fd)
                try:
                    conn.sendall(struct.pack("!i", raw))
                except OSError:
                    pass
                conn.close()


# ---------------------------------------------------------------------------------------------------- the fixture

_started: dict[str, object] = {}


def env(environ: dict[str, str], folder: os.PathLike | str) -> dict[str, str]:
    """`environ` with this process's fork server on it (started on the first call, in `folder`, and stopped when
    this process exits): its shim first on PATH, its socket in MEDAUG_FORKSERVER. A shim of another process (a DAG
    built by another pytest worker) is taken off PATH first."""
    import atexit
    import subprocess
    import time
    from pathlib import Path

    if not _started:
        folder = Path(folder) / f"forkserver-{os.getpid()}"
        (folder / "bin").mkdir(parents=True, exist_ok=True)
        shim = folder / "bin" / "python"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -SE "{Path(__file__).resolve()}" client "$@"\n')
        shim.chmod(0o755)
        sock = folder / "sock"
        proc = subprocess.Popen([sys.executable, __file__, "serve", str(sock)], stdin=subprocess.DEVNULL,
                                start_new_session=True)
        atexit.register(proc.kill)
        deadline = time.monotonic() + 120
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the fork server did not start (exit {proc.poll()})")
            time.sleep(0.05)
        _started.update(bin=str(folder / "bin"), sock=str(sock), pid=proc.pid)
    path = [p for p in environ.get("PATH", "").split(os.pathsep) if "/forkserver-" not in p]
    return {**environ, "PATH": os.pathsep.join([_started["bin"], *path]), SOCKET_ENV: _started["sock"]}


if __name__ == "__main__":
    if sys.argv[1] == "client":
        client(sys.argv[2:])
    elif sys.argv[1] == "serve":
        serve(sys.argv[2])
