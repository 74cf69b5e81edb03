"""Near-duplicate removal (MinHash + LSH on word shingles, MiniLM embeddings) and embedding decontamination."""

import random
from pathlib import Path

import pytest

from medaug.data.schema import Record, read_records
from medaug.filtering.minhash import LSH, MinHasher, estimate_jaccard, jaccard, rows_per_band, shingles
from medaug.filtering.steps import STEPS, Context
from medaug.params import Params
from support.paths import PUBMEDQA, needs_pqal

dedup, decontaminate = STEPS["dedup"], STEPS["decontaminate"]

ANDROGENS = "Is there a correlation between androgens and sexual desire in women?"
TWINS = "Can third trimester ultrasound predict the presentation of the first twin at delivery?"
HIP = ("Elderly patients operated on for hip fracture were randomised to mobilisation on the first postoperative "
       "day or to usual care. Median length of stay was 9 days with early mobilisation and 12 days with usual care.")
FALLS = ("Nursing home residents received vitamin D or placebo for one year. Falls were recorded monthly by staff "
         "blinded to allocation; the rate of falls did not differ between the groups.")


def rec(rid: str, question: str, label: str = "yes", contexts: list[str] | None = None,
        parent: str | None = None) -> Record:
    return Record(id=rid, question=question, contexts=contexts or [HIP], final_decision=label, source="new",
                  parent_id=parent)


def context(train: list[Record], test: list[Record] = (), dev: list[Record] = ()) -> Context:
    return Context(Params(), Path("."), list(train), list(dev), list(test))


def words(prefix: str, n: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


# --- MinHash and LSH ---------------------------------------------------------------------------------------

def test_minhash_estimate_is_close_to_true_jaccard_and_seeded():
    hasher = MinHasher(256, seed=0)
    base = words("w", 100).split()
    for shift in (0, 5, 11, 25, 43, 67, 100):  # single-word shingles: Jaccard (100 - s) / (100 + s)
        a, b = shingles(" ".join(base), 1), shingles(" ".join(base[shift:] + words("x", shift).split()), 1)
        true = jaccard(a, b)
        assert abs(estimate_jaccard(hasher.signature(a), hasher.signature(b)) - true) < 0.08, (shift, true)
    s = shingles("Does early mobilisation shorten the hospital stay?", 3)
    assert (MinHasher(64, seed=0).signature(s) == MinHasher(64, seed=0).signature(s)).all()
    assert not (MinHasher(64, seed=1).signature(s) == MinHasher(64, seed=0).signature(s)).all()


def test_short_texts_are_one_shingle_and_compare():
    assert shingles("Why now?", 3) == {("why", "now")}
    assert jaccard(shingles("Why now?", 3), shingles("why, NOW", 3)) == 1.0


def test_lsh_finds_exactly_the_planted_pairs_among_thousands():
    rng = random.Random(0)
    vocab = words("v", 20000).split()
    questions = [rng.sample(vocab, 15) for _ in range(3000)]
    planted = set()
    for i in range(0, 3000, 100):  # a copy with the last word replaced (J 12/14) or one word added (J 13/14)
        questions.append(questions[i][:-1] + ["changed"] if i % 200 else questions[i] + ["added"])
        planted.add((i, len(questions) - 1))
    hasher, k = MinHasher(128), 3
    lsh = LSH(128, rows_per_band(0.8, 128))
    found = set()
    for j, q in enumerate(questions):
        sig = hasher.signature(shingles(" ".join(q), k))
        found |= {(i, j) for i in lsh.candidates(sig)}
        lsh.add(j, sig)
    assert found == planted  # every planted pair, and none of the ~4.6 million unrelated pairs
    assert all(jaccard(shingles(" ".join(questions[i]), k), shingles(" ".join(questions[j]), k)) >= 0.8
               for i, j in planted)


def test_rows_per_band_keeps_recall_at_the_threshold():
    for t in (0.5, 0.8, 0.9):
        r = rows_per_band(t, 128)
        assert 1 - (1 - t ** r) ** (128 // r) >= 0.999 > 1 - (1 - t ** (r + 1)) ** (128 // (r + 1))
    assert rows_per_band(1.0, 128) == 128  # exact duplicates only: one band of the whole signature


# --- dedup ---------------------------------------------------------------------------------------------------

BASE = words("q", 18) + "?"  # 16 word 3-shingles
TRAIN_Q = words("t", 18) + "?"


def planted() -> list[Record]:
    """Near-duplicates of BASE at known Jaccard: appending n distinct words gives 16 / (16 + n)."""
    items = [rec("base", BASE), rec("copy", BASE.upper().replace("?", " !")),
             rec("j80", f"{BASE} {words('a', 4)}"), rec("j76", f"{BASE} {words('b', 5)}"),
             rec("j67", f"{BASE} {words('c', 8)}"), rec("j80-other-label", f"{BASE} {words('d', 4)}", label="no"),
             rec("t80", f"{TRAIN_Q} {words('e', 4)}", label="no")]
    return items


@pytest.mark.parametrize("threshold, dropped", [
    (1.0, {"copy"}),
    (0.81, {"copy"}),
    (0.8, {"copy", "j80", "t80"}),
    (0.76, {"copy", "j80", "j76", "t80"}),
    (0.6, {"copy", "j80", "j76", "j67", "t80"}),
])
def test_planted_near_duplicates_are_dropped_at_the_threshold_and_kept_below(threshold, dropped):
    items = planted()
    by_id = {r.id: r for r in items}
    true = {rid: jaccard(shingles(BASE, 3), shingles(by_id[rid].question, 3)) for rid in ("j80", "j76", "j67")}
    assert true == {"j80": 0.8, "j76": 16 / 21, "j67": 16 / 24}
    assert jaccard(shingles(TRAIN_Q, 3), shingles(by_id["t80"].question, 3)) == 0.8
    ctx = context([rec("train", TRAIN_Q, label="yes")])
    ctx.p.filter.dedup.threshold = threshold
    drops = dedup(items, ctx)
    assert set(drops) == dropped
    # a train near-duplicate is one whatever its label; a generated one only with the same label
    assert drops.get("t80", "duplicate_of_train") == "duplicate_of_train"
    assert {drops[r] for r in dropped - {"t80"}} == {"near_duplicate"}


def test_embedding_dedup_catches_a_paraphrase_minhash_misses():
    items = [rec("a", ANDROGENS), rec("para", "Do androgen levels correlate with women's sexual desire?"),
             rec("para-no", "Do androgen levels correlate with women's sexual desire?", label="no"),
             rec("train-para", "Can an ultrasound in the third trimester predict how the first twin will present at "
                               "delivery?"),
             rec("other", "Does a zeolite hemostatic agent reduce blood loss during arterial injury?")]
    assert jaccard(shingles(items[0].question, 3), shingles(items[1].question, 3)) < 0.1
    ctx = context([rec("train", TWINS)])
    ctx.p.filter.dedup.embedding_threshold = 0.9
    assert dedup(items, ctx) == {}
    ctx.p.filter.dedup.embedding = True
    # para-no: the same paraphrase with the other answer is kept (a negation, or another abstract)
    assert dedup(items, ctx) == {"para": "embedding_duplicate", "train-para": "embedding_duplicate"}


# --- decontaminate -------------------------------------------------------------------------------------------

ANDROGENS_CONTEXT = ("Serum testosterone and DHEA-S were measured in 1,021 women aged 18 to 75 years who completed "
                     "a validated questionnaire on sexual desire. Low desire was reported by 28% of women; no single "
                     "androgen level was associated with low sexual desire after adjustment for age.")
ANDROGENS_CONTEXT_PARAPHRASE = (
    "In 1,021 women between 18 and 75 years of age, serum testosterone and DHEA-S levels were measured and a "
    "validated sexual desire questionnaire was filled in. 28% of the women reported low desire; after adjusting "
    "for age, low sexual desire was not associated with any single androgen level.")
TWINS_CONTEXT = ("We reviewed 141 twin pregnancies scanned after 32 weeks. The presentation of the first twin on the "
                 "last ultrasound matched its presentation at delivery in 94% of pregnancies, and in all cases "
                 "scanned within one week of delivery.")
TWINS_CONTEXT_PARAPHRASE = (  # cosine 0.92 with TWINS_CONTEXT
    "Among 141 twin pregnancies with a scan after 32 weeks, the first twin's presentation at the final ultrasound "
    "was the same as at delivery in 94% of cases, and in every case when the scan was done within a week of birth.")


def test_decontaminate_removes_planted_test_items_and_keeps_unrelated_ones():
    train = [rec("tr1", "Does early mobilisation after hip fracture surgery shorten the hospital stay?"),
             rec("tr2", "Does vitamin D reduce falls in nursing home residents?", "no", [FALLS]),
             rec("tr3", "Was the agreement high in this cohort?", "yes", [TWINS_CONTEXT_PARAPHRASE])]
    test = [rec("te1", ANDROGENS, "no", [ANDROGENS_CONTEXT]), rec("te2", TWINS, "yes", [TWINS_CONTEXT])]
    items = [
        rec("q-copy", ANDROGENS, parent="tr1"),
        rec("q-para", "Do androgen levels correlate with women's sexual desire?", parent="tr1"),
        rec("q-para2", "Can an ultrasound in the third trimester predict how the first twin will present at "
                       "delivery?", parent="tr1"),
        rec("c-copy", "Is the last scan a good guide to the first twin's presentation?", contexts=[TWINS_CONTEXT]),
        rec("c-para", "Are androgen levels linked with low desire?", contexts=[ANDROGENS_CONTEXT_PARAPHRASE]),
        rec("parent", "Was any hormone associated with desire in this study?", parent="te1"),
        rec("ok1", "Is early mobilisation after hip fracture surgery followed by a shorter stay?", parent="tr1"),
        rec("ok2", "Did vitamin D supplementation lower the rate of falls?", "no", [FALLS], parent="tr2"),
        rec("ok3", "Is getting out of bed on the day after hip surgery safe for older patients?", parent="tr1"),
        # a train abstract is original training data: not judged, even when it is close to a test abstract
        rec("ok4", "Were most pregnancies in this cohort scanned late?", contexts=[TWINS_CONTEXT_PARAPHRASE],
            parent="tr3"),
    ]
    ctx = context(train, test)
    ctx.p.filter.decontaminate.embedding_threshold = 0.85
    assert decontaminate(items, ctx) == {"q-copy": "test_overlap", "c-copy": "test_overlap", "parent": "test_overlap"}
    ctx.p.filter.decontaminate.embedding = True
    assert decontaminate(items, ctx) == {"q-copy": "test_overlap", "c-copy": "test_overlap",
                                         "parent": "test_overlap", "q-para": "test_embedding",
                                         "q-para2": "test_embedding", "c-para": "test_embedding"}


# real PQA-L test questions shorter than 8 words: they have no 8-gram, so only the whole-question rule sees them
HALOFANTRINE = "Is halofantrine ototoxic?"
MOSSY = "Do mossy fibers release GABA?"
HALOFANTRINE_CONTEXT = ("Guinea pigs received halofantrine orally for 14 days before auditory brainstem responses "
                        "and outer hair cell counts were compared with untreated animals.")


@pytest.mark.parametrize("ngram", [8, 13])
def test_decontaminate_drops_copies_of_test_questions_too_short_for_an_ngram(ngram):
    train = [rec("tr1", "Does early mobilisation after hip fracture surgery shorten the hospital stay?")]
    test = [rec("te1", HALOFANTRINE, "yes", [HALOFANTRINE_CONTEXT]), rec("te2", MOSSY, "yes", [FALLS + " GABA."]),
            rec("te3", ANDROGENS, "no", [ANDROGENS_CONTEXT])]  # 11 words: short at 13, caught by its 8-grams at 8
    items = [
        rec("verbatim", HALOFANTRINE, parent="tr1"),
        rec("case-punct", "  is HALOFANTRINE -- ototoxic ??", parent="tr1"),
        rec("embedded", f"In this cohort of guinea pigs, {MOSSY.lower()[:-1]}, and does it matter?", parent="tr1"),
        rec("long-copy", ANDROGENS.upper(), parent="tr1"),
        rec("few-words", "Is halofantrine safe for children with malaria?", parent="tr1"),
        rec("reordered", "Do GABA fibers release mossy neurotransmitters?", parent="tr1"),
        rec("partial", "Is halofantrine, an antimalarial, ototoxic?", parent="tr1"),
    ]
    ctx = context(train, test)
    ctx.p.filter.decontaminate.ngram = ngram
    assert decontaminate(items, ctx) == {"verbatim": "test_question", "case-punct": "test_question",
                                         "embedded": "test_question",
                                         "long-copy": "test_overlap" if ngram == 8 else "test_question"}


# hand-written paraphrases of real PQA-L test questions (what a teacher's rewrite of a test item looks like)
PQAL_PARAPHRASES = {
    "12377809": "Is endosonography of the anorectum useful for patients with dyschesia?",
    "26163474": "Are sublingual varices associated with high blood pressure?",
    "18537964": "Does the specialty of the doctor affect how medication histories are documented in case notes?",
    "25475395": "Do androgen levels correlate with women's sexual desire?",
    "19130332": "Does a zeolite-based hemostatic agent reduce bleeding from an injured artery?",
    "9427037": "Do the patterns of endothelial cells in astrocytomas indicate tumour grade?",
    "24481006": "Should cone beam CT reports mention cavitation of proximal tooth surfaces?",
    "22680064": "Can an ultrasound in the third trimester predict how the first twin will present at delivery?",
    "12765819": "Can a ruptured intracranial aneurysm lead to a spinal subdural hematoma?",
    "8165771": "Is ultrasound useful for clinically staging squamous cell carcinoma of the penis?",
}


@needs_pqal
def test_real_pqal_planted_test_items_are_removed_and_train_items_kept(tmp_path):
    from medaug.data import prepare
    from medaug.params import DataParams
    out = tmp_path / "prepared"
    prepare.run(Params(data=DataParams(source=str(PUBMEDQA / "ori_pqal.json"))), tmp_path, out, tmp_path / "m.json")
    train, dev, test = (read_records(out / f"{name}.jsonl") for name in ("train", "dev", "test"))
    test = test[:50]  # embedding abstracts is the slow part: 50 test and 50 train ones keep this test short
    assert set(PQAL_PARAPHRASES) <= {r.id for r in test}
    clean = [rec(f"train-{r.id}", r.question, r.final_decision, r.contexts, r.id) for r in train[:50]]
    paraphrases = [rec(f"para-{tid}", q, contexts=train[i].contexts, parent=train[i].id)
                   for i, (tid, q) in enumerate(PQAL_PARAPHRASES.items())]
    copies = [rec(f"copy-{t.id}", f"Quick check: {t.question}", contexts=train[i].contexts, parent=train[i].id)
              for i, t in enumerate(test[20:30])]
    abstracts = [rec(f"abstract-{t.id}", train[i].question, contexts=t.contexts) for i, t in enumerate(test[30:40])]
    ctx = Context(Params(), tmp_path, train, dev, test)
    ctx.p.filter.decontaminate.embedding, ctx.p.filter.decontaminate.embedding_threshold = True, 0.85
    drops = decontaminate(clean + paraphrases + copies + abstracts, ctx)
    assert drops == {r.id: "test_embedding" for r in paraphrases} | {r.id: "test_overlap" for r in copies + abstracts}


@needs_pqal
@pytest.mark.parametrize("ngram", [8, 13])
def test_real_pqal_every_official_test_question_copied_verbatim_is_dropped(tmp_path, ngram):
    """All 500 official test questions, each asked as a new item on a train abstract (the label of the test item),
    are dropped, the short ones (32 under 8 words, 220 under 13) included; the train questions are kept."""
    from medaug.data import prepare
    from medaug.data.text import words as text_words
    from medaug.params import DataParams
    out = tmp_path / "prepared"
    prepare.run(Params(data=DataParams(source=str(PUBMEDQA / "ori_pqal.json"))), tmp_path, out, tmp_path / "m.json")
    train, dev, test = (read_records(out / f"{name}.jsonl") for name in ("train", "dev", "test"))
    assert len(test) == 500
    copies = [rec(f"copy-{t.id}", t.question, t.final_decision, train[i % len(train)].contexts,
                  train[i % len(train)].id) for i, t in enumerate(test)]
    own = [rec(f"own-{r.id}", r.question, r.final_decision, r.contexts, r.id) for r in train + dev]
    ctx = Context(Params(), tmp_path, train, dev, test)
    ctx.p.filter.decontaminate.ngram = ngram
    drops = decontaminate(copies + own, ctx)
    assert set(drops) == {r.id for r in copies}
    short = sum(len(text_words(t.question)) < ngram for t in test)
    assert short == {8: 32, 13: 220}[ngram] and list(drops.values()).count("test_question") >= short
