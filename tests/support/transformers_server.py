"""`transformers serve` (the pinned transformers' serving extra) on 127.0.0.1: the OpenAI-compatible server no one
here wrote, for tests/integration/test_real_server.py and bench/real_server.py.

    with TransformersServer(model_dir, log_path, "--continuous-batching") as base_url: ...
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


class TransformersServer:
    """Serves `model` (a folder) on CPU in float32, offline; `__enter__` returns the base URL once GET /health
    answers (within `wait_s`), or raises RuntimeError with the end of the server's log."""

    def __init__(self, model: str | Path, log: Path, *extra: str, wait_s: float = 180.0):
        self.model, self.log, self.extra, self.wait_s = str(model), Path(log), extra, wait_s
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        exe = Path(sys.executable).absolute().parent / "transformers"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(self.log.parent / "hf"), "NO_COLOR": "1"}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([str(exe), "serve", "--host", "127.0.0.1", "--port", str(port), "--device",
                                          "cpu", "--dtype", "float32", *self.extra, self.model],
                                         stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    return f"http://127.0.0.1:{port}/v1"
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"transformers serve did not come up:\n{self.log.read_text()[-3000:]}")
                time.sleep(0.3)

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:  # uvicorn waits for the requests still running
            self.proc.kill()
            self.proc.wait()
