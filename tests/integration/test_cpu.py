"""Issue 31 part 6: under `cpu.isa: avx2` the training and scoring stages run torch's, oneDNN's and MKL's AVX2
kernels whatever the x86 CPU (medaug.cpu); each is checked in a fresh interpreter, as a stage starts."""

import os
import platform
import re
import subprocess
import sys

import pytest

from medaug import cpu
from medaug.params import read_yaml
from support.paths import ROOT

pytestmark = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                                reason="the caps are x86 instruction sets; elsewhere cpu.isa sets nothing")

KERNELS = """
import sys
sys.path.insert(0, {src!r})
from medaug.cpu import cap_kernels
cap_kernels({params!r})
import torch
print("aten:", torch.backends.cpu.get_cpu_capability(), flush=True)
a = torch.randn(64, 64)
a @ a  # MKL's sgemm
packed = torch.ops.mkldnn._reorder_linear_weight(a, 8)  # a oneDNN primitive (the local teacher's head)
torch.ops.mkldnn._linear_pointwise(torch.randn(8, 64), packed, None, "none", [], "")
"""


def uncapped() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in cpu.AVX2}  # conftest caps this suite's processes


def kernels(tmp_path, isa: str) -> dict[str, str]:
    """The instruction set each library reports in a fresh process whose params say `isa`."""
    (tmp_path / "params.yaml").write_text(f"cpu:\n  isa: {isa}\n")
    r = subprocess.run([sys.executable, "-c", KERNELS.format(src=str(ROOT / "src"),
                                                            params=str(tmp_path / "params.yaml"))],
                       env={**uncapped(), "MKL_VERBOSE": "1", "ONEDNN_VERBOSE": "1"}, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    return {"aten": re.search(r"^aten: (\S+)", out, re.M).group(1),
            "mkl": re.search(r"^MKL_VERBOSE oneMKL .*? for Intel\(R\) 64 architecture (.*?)(,| with| enabled)",
                             out, re.M).group(1),
            "onednn": re.search(r"onednn_verbose,.*info,cpu,isa:(.*)$", out, re.M).group(1)}


def test_avx2_caps_every_library_and_native_leaves_each_its_own_choice(tmp_path):
    capped = kernels(tmp_path, "avx2")
    assert capped["aten"] == "AVX2", capped
    assert capped["onednn"] == "Intel AVX2", capped
    native = kernels(tmp_path, "native")
    cpuinfo = open("/proc/cpuinfo").read()
    avx512 = "avx512f" in cpuinfo
    assert (native["aten"] == "AVX512") == avx512, native  # this CPU's best: AVX-512 where it has it
    assert ("AVX-512" in native["onednn"]) == avx512, native
    if "GenuineIntel" in cpuinfo:  # MKL dispatches on the instruction set on Intel CPUs only
        assert "AVX2" in capped["mkl"] and "512" not in capped["mkl"], capped
        assert ("AVX-512" in native["mkl"]) == avx512, native
    else:  # elsewhere (AMD EPYC, say) it takes its generic path, capped or not, and its banner names no ISA
        assert capped["mkl"] == native["mkl"] == "Intel(R) Architecture processors", (capped, native)


def test_every_capped_stage_sets_the_caps_before_anything_loads_torch():
    """The stage scripts whose dvc.yaml entries declare cpu.isa, run up to their `if __name__ == "__main__"` in one
    fresh interpreter where importing torch fails: each calls cap_kernels (torch not loaded yet) and only then
    reaches an import that needs torch."""
    scripts = sorted({re.search(r"stages/\w+\.py", s["cmd"]).group(0)
                      for s in read_yaml(ROOT / "dvc.yaml")["stages"].values() if "cpu.isa" in s.get("params", [])})
    assert scripts == ["stages/evaluate.py", "stages/pretrain.py", "stages/probe.py", "stages/train.py"]
    probe = f"""
import importlib.abc, runpy, sys
sys.path.insert(0, {str(ROOT / "src")!r})
import medaug.cpu
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError("torch is blocked")
sys.meta_path.insert(0, NoTorch())
calls = []
real = medaug.cpu.cap_kernels
medaug.cpu.cap_kernels = lambda *a: calls.append("torch" in sys.modules) or real(*a)
for script in sys.argv[1:]:
    before = len(calls)
    try:
        runpy.run_path(script, run_name="stage")
    except ImportError as e:
        print(script, "called cap_kernels" if len(calls) > before else "never called cap_kernels", "then:", e)
    else:
        print(script, "imports nothing that needs torch")
"""
    r = subprocess.run([sys.executable, "-c", probe, *scripts], cwd=ROOT, env=uncapped(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{s} called cap_kernels then: torch is blocked" for s in scripts], r.stdout
