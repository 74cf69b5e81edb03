"""This machine's limits, measured by the benches that compare against them: the float32 matmul rate at a model's
shapes (the compute roofline of a prefill or a scoring pass) and the memory read rate (the roofline of a decode
step, which reads every weight once)."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    """The CPU a figure was measured on, in words: cores, model and the vector units that set its matmul rate
    (figures from an AVX2 machine and from one that multiplies bf16 natively differ by 2x and more)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    units = [label for flag, label in (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_bf16", "AVX512-BF16"),
                                       ("amx_tile", "AMX")) if flag in flags]
    return f"{os.cpu_count()} cores of {name} ({', '.join(units) or 'no AVX2'}), {platform.machine()}"


def commit(paths: tuple[str, ...] = ("src", "bench")) -> str:
    """The commit measured, marked when `paths` hold uncommitted changes."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--", *paths], capture_output=True, text=True).stdout
    return head + (" + uncommitted changes" if dirty else "")


def matmul_gflops(hidden: int, inter: int, tokens: int = 1024, repeats: int = 20, dtype: str = "float32") -> float:
    """GFLOP/s of matmuls (float32, or `dtype`) at the model's MLP shapes (tokens x hidden @ hidden x inter), best
    of `repeats` for each kernel torch has for it (its matmul, and in float32 oneDNN's inner product on a packed
    weight, which the local teacher's output projection uses and which can beat the matmul by a fifth): the
    compute roofline of a forward pass on this machine."""
    import torch

    a, b = (torch.randn(*shape).to(getattr(torch, dtype)) for shape in ((tokens, hidden), (hidden, inter)))
    kernels = [lambda: a @ b]
    if dtype == "float32" and torch.backends.mkldnn.is_available():
        packed = torch.ops.mkldnn._reorder_linear_weight(b.T.contiguous(), tokens)
        kernels.append(lambda: torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], ""))
    best = float("inf")
    for kernel in kernels:
        kernel()  # warm up
        for _ in range(repeats):
            start = time.perf_counter()
            kernel()
            best = min(best, time.perf_counter() - start)
    return 2 * tokens * hidden * inter / best / 1e9


def read_gbps(mbytes: int = 1024, repeats: int = 10) -> float:
    """GB/s at which torch reads a float32 tensor far larger than the caches (a sum over `mbytes` MB), best of
    `repeats`: the memory roofline of a decode step."""
    import torch

    x = torch.ones(mbytes * 2**20 // 4)
    x.sum()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - start)
    return x.numel() * 4 / best / 1e9
