"""Test-set leakage through user corpora: continued pretraining (`pretrain.corpus`) and grounded generation
(`generate.grounded.corpus`) drop what leaks the test split, with the check the filter's decontaminate step uses
(data/leakage.py), and report how much they dropped."""

import doctest
import json
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from medaug.augment import grounded
from medaug.data import leakage
from medaug.data.leakage import Contamination
from medaug.data.schema import Record, read_records, write_records
from medaug.params import parse_params
from medaug.paths import PretrainIO
from medaug.train import pretrain
from support.paths import PUBMEDQA, ROOT, needs_pqal

HIP = ("Elderly patients operated on for hip fracture were randomised to mobilisation on the first postoperative "
       "day or to usual care. Median length of stay was 9 days with early mobilisation and 12 days with usual care.")
FALLS = ("Nursing home residents received vitamin D or placebo for one year. Falls were recorded monthly by staff "
         "blinded to allocation; the rate of falls did not differ between the groups.")
ZEOLITE = ("A zeolite hemostatic agent or standard gauze was applied to a standardized femoral artery injury in 24 "
           "anesthetized swine. Blood loss was 180 ml with the zeolite agent and 510 ml with gauze.")
HALOFANTRINE = "Is halofantrine ototoxic?"  # a real PQA-L test question: 3 words, no 8-gram
CLEAN = {  # (file, text): documents about neither test item
    "notes.txt": "Antibiotic stewardship programmes review every prescription of a broad spectrum drug within two "
                 "days and switch to a narrow agent once cultures return.",
    "more.txt": "Loop diuretics relieve congestion in acute heart failure; the dose is titrated to urine output and "
                "to the weight measured every morning before breakfast.",
}


@pytest.fixture
def split_dir(tmp_path) -> Path:
    """A split whose test items are a zeolite study and the halofantrine question; HIP is a train abstract."""
    out = tmp_path / "prepared"
    write_records(out / "train.jsonl", [Record("r1", "Does early mobilisation shorten the hospital stay?", [HIP],
                                               "yes")])
    write_records(out / "dev.jsonl", [Record("d1", "Does vitamin D reduce falls in nursing homes?", [FALLS], "no")])
    write_records(out / "test.jsonl", [
        Record("t1", "Does a zeolite hemostatic agent reduce blood loss from an arterial injury?", [ZEOLITE], "yes"),
        Record("t2", HALOFANTRINE, ["Guinea pigs received halofantrine orally for 14 days."], "yes")])
    return out


def write_corpus(folder: Path, planted: bool) -> Path:
    """CLEAN as .txt files, abstracts.jsonl (a train abstract, and with `planted` the test abstract) and faq.md
    (three paragraphs of 18-24 words: passages of their own at 36 words; with `planted` the second asks the test
    question verbatim, inside a sentence)."""
    folder.mkdir(parents=True)
    for name, text in CLEAN.items():
        (folder / name).write_text(text)
    lines = [{"id": "hip", "text": HIP}] + ([{"id": "zeolite", "text": ZEOLITE}] if planted else [])
    (folder / "abstracts.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    middle = ("Travellers back from West Africa keep asking us: is halofantrine ototoxic? We answer with the "
              "audiology data below." if planted else
              "Travellers back from West Africa keep asking us about malaria drugs. We answer with the data below.")
    (folder / "faq.md").write_text(
        "# Malaria\n\nMalaria prophylaxis depends on the region visited, the length of stay and the resistance "
        f"pattern of the local parasites.\n\n{middle}\n\nHearing was tested before and after treatment in every "
        "traveller who reported tinnitus during the course, and again three months after the last dose.\n")
    return folder


def test_the_doctest_of_the_leak_check_holds():
    assert doctest.testmod(leakage).failed == 0


def test_leak_check_counts_test_specific_ngrams_and_whole_test_questions_only(split_dir):
    leak = Contamination.of_split(split_dir, 8)
    assert leak.reason(f"Background. {ZEOLITE.upper()} Conclusion.") == "test_overlap"
    assert leak.reason("After an injury Blood loss was 180 ml with the zeolite agent, as reported") == "test_overlap"
    assert leak.reason(HIP) is None  # a train abstract shares no test-specific n-gram
    assert leak.reason("So... IS Halofantrine-ototoxic?!") == "test_question"
    assert leak.reason("Is halofantrine an ototoxic drug?") is None  # the words, not in order, are no copy
    assert leak.reason("Blood loss was 180 ml") is None  # shorter than n: no n-gram, and no test question
    assert Contamination.of_split(split_dir, 5).reason("Blood loss was 180 ml") == "test_overlap"


def test_grounded_drops_exactly_the_passages_that_leak_and_counts_them(tmp_path, split_dir):
    leak = Contamination.of_split(split_dir, 8)
    corpus = write_corpus(tmp_path / "corpus", planted=True)
    every = grounded.read_corpus(corpus, 36, 0)  # one passage per abstract, three for faq.md
    kept, dropped = grounded.read_clean_corpus(corpus, 36, 0, leak)
    gone = [s for s in every if s not in kept]
    assert [(s.file, s.chunk, s.doc) for s in gone] == [("abstracts.jsonl", 1, "zeolite"), ("faq.md", 1, None)]
    assert dropped == 2 and len(kept) == len(every) - 2 == 5
    assert [(s.file, s.chunk) for s in kept if s.file == "faq.md"] == [("faq.md", 0), ("faq.md", 2)]  # pointers hold
    clean = write_corpus(tmp_path / "clean", planted=False)
    assert grounded.read_clean_corpus(clean, 36, 0, leak) == (grounded.read_corpus(clean, 36, 0), 0)


def test_pretrain_corpus_drops_exactly_the_documents_that_leak_and_counts_them(tmp_path, split_dir):
    leak = Contamination.of_split(split_dir, 8)
    texts, dropped = pretrain.corpus_texts(write_corpus(tmp_path / "corpus", planted=True), leak)
    assert dropped == 2 and len(texts) == 3  # the zeolite line and faq.md, a document of its own
    assert not any("zeolite" in t or "halofantrine" in t for t in texts) and HIP in texts
    clean, dropped = pretrain.corpus_texts(write_corpus(tmp_path / "clean", planted=False), leak)
    assert dropped == 0 and len(clean) == 4
    # the default corpus, the prepared train split, is clean by construction
    assert pretrain.corpus_texts(split_dir / "train.jsonl", leak) == ([HIP], 0)


@pytest.mark.usefixtures("tiny_cache")
def test_pretrain_reports_the_documents_it_dropped_in_its_metrics(tmp_path, split_dir):
    p = parse_params({"models": {"tiny": "tiny-llama"}, "pretrain": {"models": ["tiny"], "block_size": 16,
                                                                     "max_steps": 1},
                      "train": {"models": ["tiny"], "batch_size": 2, "grad_accum": 1,
                                "checkpoints": str(tmp_path / "ckpt")}})
    corpus = write_corpus(tmp_path / "corpus", planted=True)
    metrics = pretrain.run(p, "tiny", PretrainIO(corpus, split_dir, tmp_path / "out", tmp_path / "metrics.json"))
    assert metrics["documents"] == 3 and metrics["dropped_test_overlap"] == 2
    assert json.loads((tmp_path / "metrics.json").read_text())["dropped_test_overlap"] == 2


def test_dvc_stages_that_read_a_corpus_depend_on_the_split_and_the_leak_check():
    stages = YAML(typ="safe", pure=True).load((ROOT / "dvc.yaml").read_text())["stages"]
    for name in ("pretrain", "generate"):
        assert {"data/prepared/train.jsonl", "data/prepared/dev.jsonl", "data/prepared/test.jsonl",
                "src/medaug/data/leakage.py"} <= set(stages[name]["deps"]), name
        assert "filter.decontaminate.ngram" in stages[name]["params"], name


@needs_pqal
def test_real_pqal_test_abstracts_leave_a_corpus_and_train_abstracts_stay(tmp_path):
    """A corpus of every PQA-L abstract (a PubMed dump holds them all) keeps the 500 train/dev ones and loses the 500
    test ones, as whole documents (pretrain) and as passages (grounded)."""
    from medaug.data import prepare
    from medaug.params import DataParams, Params
    out = tmp_path / "prepared"
    prepare.run(Params(data=DataParams(source=str(PUBMEDQA / "ori_pqal.json"))), tmp_path, out, tmp_path / "m.json")
    split = {name: read_records(out / f"{name}.jsonl") for name in ("train", "dev", "test")}
    corpus = tmp_path / "pubmed.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"{name}-{r.id}", "text": "\n\n".join(r.contexts)}) + "\n"
                              for name, recs in split.items() for r in recs))
    leak = Contamination.of_split(out, 8)
    texts, dropped = pretrain.corpus_texts(corpus, leak)
    assert dropped == 500 and texts == ["\n\n".join(r.contexts) for r in split["train"] + split["dev"]]
    kept, dropped = grounded.read_clean_corpus(corpus, 256, 32, leak)
    assert {s.doc.split("-")[0] for s in kept} == {"train", "dev"} and dropped >= 500
