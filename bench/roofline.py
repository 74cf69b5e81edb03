"""This machine's limits, measured by the benches that compare against them: the float32 matmul rate at a model's
shapes (the compute roofline of a prefill or a scoring pass) and the memory read rate (the roofline of a decode
step, which reads every weight once)."""

from __future__ import annotations

import time


def matmul_gflops(hidden: int, inter: int, tokens: int = 1024, repeats: int = 20, dtype: str = "float32") -> float:
    """GFLOP/s of torch matmuls (float32, or `dtype`) at the model's MLP shapes (tokens x hidden @ hidden x inter),
    best of `repeats`: the compute roofline of a forward pass on this machine."""
    import torch

    a, b = (torch.randn(*shape).to(getattr(torch, dtype)) for shape in ((tokens, hidden), (hidden, inter)))
    a @ b  # warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
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
