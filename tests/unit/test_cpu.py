"""Issue 31 part 6: `cpu.isa` caps the kernels of the training and scoring stages (medaug.cpu)."""

import pytest

from medaug import cpu
from medaug.errors import MedaugError
from medaug.params import parse_params


def test_avx2_caps_torch_onednn_and_mkl_on_x86_only_and_native_sets_nothing():
    assert cpu.caps("avx2", "x86_64") == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                                         "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    assert cpu.caps("avx2", "AMD64") == cpu.caps("avx2", "x86_64")
    assert cpu.caps("avx2", "aarch64") == {}  # no such instruction set there: nothing to cap
    assert cpu.caps("native", "x86_64") == {}
    assert parse_params({}).cpu.isa == "avx2"  # the default: the same bytes on every x86 CPU kind
    with pytest.raises(MedaugError, match=r"cpu.isa = 'avx512' is not allowed \(allowed: avx2, native\)"):
        parse_params({"cpu": {"isa": "avx512"}})


def test_a_process_that_loaded_torch_without_the_caps_cannot_take_them(tmp_path, monkeypatch, capsys):
    """torch is loaded here (this process imported it): `cap_kernels` then fails with the fix instead of letting
    the stage run on native kernels; with the caps already in the environment (a fork of a capped server, a
    process started with them) it passes."""
    import torch  # noqa: F401

    (tmp_path / "params.yaml").write_text("cpu:\n  isa: avx2\n")
    monkeypatch.setattr(cpu.platform, "machine", lambda: "x86_64")
    for k in cpu.AVX2:
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(SystemExit) as e:
        cpu.cap_kernels(str(tmp_path / "params.yaml"))
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: params.yaml: cpu.isa is avx2, but torch was loaded before its caps were set "
                          "(ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2): call "
                          "medaug.cpu.cap_kernels() before importing torch"), err
    for k, v in cpu.AVX2.items():
        monkeypatch.setenv(k, v)
    assert cpu.cap_kernels(str(tmp_path / "params.yaml")) == cpu.AVX2
    (tmp_path / "params.yaml").write_text("cpu:\n  isa: native\n")
    for k in cpu.AVX2:
        monkeypatch.delenv(k)
    assert cpu.cap_kernels(str(tmp_path / "params.yaml")) == {}  # native: nothing to set, torch or not
