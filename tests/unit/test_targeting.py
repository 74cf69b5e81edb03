"""The parent-picking rules of targeted generation (issue 34), on hand-made scores."""

import pytest

from medaug.targeting import margin, pick
from medaug.errors import MedaugError


def row(rid, gold, lps):
    """A scored training item: the prediction is the answer with the highest log-prob, as the scorer's."""
    return {"id": rid, "gold": gold, "prediction": max(lps, key=lps.get), "logprobs": lps}


ROWS = [
    row("a", "yes", {"yes": -0.1, "no": -2.5, "maybe": -3.0}),   # right, sure: margin +2.4
    row("b", "no", {"yes": -0.2, "no": -1.9, "maybe": -3.0}),    # wrong, sure: -1.7
    row("c", "maybe", {"yes": -1.0, "no": -1.2, "maybe": -1.1}),  # wrong, unsure: -0.1
    row("d", "yes", {"yes": -0.9, "no": -1.0, "maybe": -2.0}),   # right, unsure: +0.1
    row("e", "no", {"yes": -2.0, "no": -3.0, "maybe": -0.5}),    # wrong, sure: -2.5
]
ORIGINALS = {"a", "b", "c", "d", "e", "f"}


def test_margin_is_gold_less_the_best_other_answer():
    assert [round(margin(r), 6) for r in ROWS] == [2.4, -1.7, -0.1, 0.1, -2.5]


def test_errors_are_the_wrong_answers_most_confident_first_capped_at_n():
    assert pick("errors", ROWS, 10, 0, ORIGINALS) == ["e", "b", "c"]  # exactly the three wrong ones
    assert pick("errors", ROWS, 2, 0, ORIGINALS) == ["e", "b"]
    assert pick("errors", [r for r in ROWS if r["id"] in "ad"], 5, 0, ORIGINALS) == []  # no error, no parent


def test_margin_ranks_every_item_least_sure_or_wrong_first():
    assert pick("margin", ROWS, 4, 0, ORIGINALS) == ["e", "b", "c", "d"]


def test_random_is_a_seeded_sample_whatever_the_student_answered():
    first = pick("random", ROWS, 3, 7, ORIGINALS)
    assert len(first) == 3 and len(set(first)) == 3 and set(first) <= {r["id"] for r in ROWS}
    assert pick("random", list(reversed(ROWS)), 3, 7, ORIGINALS) == first  # the rows' order does not matter
    draws = {tuple(pick("random", ROWS, 3, s, ORIGINALS)) for s in range(20)}
    assert len(draws) > 1 and any("a" in d or "d" in d for d in draws)  # right answers are drawn too
    assert sorted(pick("random", ROWS, 99, 0, ORIGINALS)) == ["a", "b", "c", "d", "e"]


def test_a_generated_item_is_never_a_parent_and_bad_input_is_refused():
    generated = row("gen-1", "no", {"yes": -0.1, "no": -5.0})
    with pytest.raises(MedaugError, match=r"1 scored rows are not original training items \(e.g. 'gen-1'\)"):
        pick("errors", [*ROWS, generated], 3, 0, ORIGINALS)
    with pytest.raises(MedaugError, match="unknown rule 'worst'"):
        pick("worst", ROWS, 3, 0, ORIGINALS)
    with pytest.raises(MedaugError, match="must hold the gold answer 'maybe'"):
        margin(row("x", "maybe", {"yes": -1.0, "no": -2.0}))
