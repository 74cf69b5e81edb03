"""Does a text leak the test split? One answer for the filter's `decontaminate` step (generated items), continued
pretraining (corpus documents) and the `grounded` strategy (corpus passages), so the three cannot disagree.

A text leaks the test split when it
- shares a test-specific word n-gram (`test_overlap`): an n-gram of a test question or context that no train/dev
  question or context has, so boilerplate ("the aim of this study was to evaluate") does not count; or
- contains a whole test question (`test_question`): its words, normalised as `data.text.words` does, in order.
  A test question shorter than n words has no n-gram at all (32 of the 500 PubMedQA test questions at n = 8), so
  without this rule a verbatim copy of it, answer and all, would pass.

This module reads only the data layer, so pretraining and generation can use it without importing filtering.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from medaug.data.schema import Record, read_records
from medaug.data.text import word_ngrams, words

Gram = tuple[str, ...]
T = TypeVar("T")


def contamination_ngrams(test: Iterable[Record], clean: Iterable[Record], n: int) -> set[Gram]:
    """Word n-grams of test questions, contexts and options that do NOT occur in the clean (train/dev) records.

    N-grams shared with train/dev are boilerplate ("the aim of this study was to evaluate") or template text:
    the model sees them in the original training data anyway, and flagging them would drop 13% of real
    PubMedQA train abstracts (and every templated sample abstract) as "test overlap".
    """
    grams: set[Gram] = set()
    for r in test:
        grams |= word_ngrams(r.question, n) | word_ngrams(r.context, n) | word_ngrams(r.options_text, n)
    for r in clean:
        grams -= word_ngrams(r.question, n) | word_ngrams(r.context, n) | word_ngrams(r.options_text, n)
    return grams


class Contamination:
    """The test split's leak check: `reason(text)` is "test_overlap", "test_question" or None.

    >>> test = [Record("t1", "Is halofantrine ototoxic?", ["Guinea pigs received halofantrine ..."], "yes")]
    >>> leak = Contamination(test, clean=[], n=8)
    >>> leak.reason("IS HALOFANTRINE OTOTOXIC"), leak.reason("So: is halofantrine ototoxic, or not?")
    ('test_question', 'test_question')
    >>> leak.reason("Is halofantrine safe?") is None
    True
    """

    def __init__(self, test: Iterable[Record], clean: Iterable[Record], n: int):
        test = list(test)
        self.n = n
        self.ids = {r.id for r in test}
        self.grams = contamination_ngrams(test, clean, n)
        questions = {q for r in test if (q := tuple(words(r.question)))}
        # questions indexed by their first `head` words (the shortest question's length): one lookup a word
        self._head = min(map(len, questions), default=0)
        self._questions: dict[Gram, list[Gram]] = {}
        for q in questions:
            self._questions.setdefault(q[:self._head], []).append(q)

    @classmethod
    def of_split(cls, prepared_dir: Path, n: int) -> Contamination:
        """The check for the prepared split in `prepared_dir` (its test.jsonl; train.jsonl and dev.jsonl are clean)."""
        train, dev, test = (read_records(Path(prepared_dir) / f"{name}.jsonl") for name in ("train", "dev", "test"))
        return cls(test, train + dev, n)

    def shares_ngram(self, text: str) -> bool:
        return not self.grams.isdisjoint(word_ngrams(text, self.n))

    def has_question(self, text: str) -> bool:
        """The text's words contain a whole test question's, in order (equal to it, or around it)."""
        w, k = words(text), self._head
        return any(tuple(w[i:i + len(q)]) == q
                   for i in range(len(w) - k + 1) for q in self._questions.get(tuple(w[i:i + k]), ()))

    def reason(self, text: str) -> str | None:
        if self.shares_ngram(text):
            return "test_overlap"
        if self.has_question(text):
            return "test_question"
        return None

    def keep(self, items: list[T], text: Callable[[T], str] = str) -> tuple[list[T], int]:
        """The items whose text leaks nothing, in order, and how many were dropped."""
        kept = [x for x in items if self.reason(text(x)) is None]
        return kept, len(items) - len(kept)
