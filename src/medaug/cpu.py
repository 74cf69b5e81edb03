"""The same bytes on every x86 CPU kind (issue 31): the training and scoring stages cap their kernels' instruction
set to AVX2 (params `cpu.isa`), so an AVX-512 machine computes what an AVX2-only one does.

torch's own kernels (ATen), oneDNN and MKL each pick their code path by instruction set when they load, and an
AVX-512 path sums in another order than the AVX2 one: without the caps the same inputs give adapters, curves and
scores that differ in the last digits from one CPU kind to the next. The caps are environment variables read when
those libraries load, so a stage script calls `cap_kernels()` before anything imports torch; a launcher's workers
(torchrun, accelerate) each run the stage script and set them again. What they cost and what they reach:
bench/RESULTS.md ("`cpu.isa`: avx2 caps vs native kernels"), bench/cpu_isa.py."""

from __future__ import annotations

import os
import platform
import sys

from medaug.errors import MedaugError, user_errors

AVX2 = {
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's vectorised kernels (matmul epilogues, softmax, reductions, optimizers)
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN's primitives
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",  # MKL's code path (sgemm: the linear layers)
}
"""The caps of `cpu.isa: avx2`."""

LOADERS = ("torch",)
"""Libraries that fix their kernels when they load (torch loads oneDNN and MKL with it)."""


def caps(isa: str, machine: str | None = None) -> dict[str, str]:
    """The environment `isa` asks for on this machine (`machine`: platform.machine()): `avx2` caps an x86 CPU's
    kernels at AVX2; `native` (each CPU's fastest path) and any non-x86 CPU set nothing."""
    machine = (machine or platform.machine()).lower()
    return dict(AVX2) if isa == "avx2" and machine in ("x86_64", "amd64") else {}


def cap_kernels(params_path: str = "params.yaml") -> dict[str, str]:
    """Set the caps `cpu.isa` asks for in this process's environment (and its children's), before torch loads;
    returns them. The first call of a training or scoring stage script: a process that loaded torch without the
    caps cannot take them any more, and that is an error here, not a silent native run."""
    from medaug.params import load_params

    with user_errors():
        isa = load_params(params_path).cpu.isa
        want = caps(isa)
        todo = {k: v for k, v in want.items() if os.environ.get(k) != v}
        loaded = [m for m in LOADERS if m in sys.modules]
        if todo and loaded:
            raise MedaugError(
                f"params.yaml: cpu.isa is {isa}, but {loaded[0]} was loaded before its caps were set "
                f"({' '.join(f'{k}={v}' for k, v in todo.items())}): call medaug.cpu.cap_kernels() before "
                f"importing {loaded[0]}, or start the process with them in its environment")
        os.environ.update(todo)
        return want
