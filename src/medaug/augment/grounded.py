"""Passages of a user corpus for the `grounded` strategy (MQG: questions grounded in textbook passages).

A corpus is a folder of .txt and .md files (paragraphs separated by blank lines; Markdown heading marks are
dropped, their text kept) and .jsonl files (one document a line: `text`, optional `id` and `title`), read
recursively in sorted relative-path order, hidden files and folders skipped, so the same folder gives the same
passages on every machine.

Tokens are words (runs of non-whitespace), not a model's tokens: the budget then means the same thing whatever
the teacher, and costs no tokenizer. English biomedical prose runs at about 1.3 subword tokens a word.
`src/medaug/augment/sample_corpus/` holds a small synthetic corpus (written for tests and offline runs; the
abstracts' studies never happened) so the strategy runs with no download.

A user corpus may hold test abstracts (a PubMed dump holds all of them): `read_clean_corpus` drops the passages
that leak the test split before any is asked about, with the check the filter's `decontaminate` step applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medaug.data.corpus import corpus_files, documents
from medaug.data.leakage import Contamination
from medaug.data.schema import Record

_MD_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+", re.MULTILINE)


@dataclass(frozen=True)
class Passage:
    file: str                # path relative to the corpus folder, with /
    chunk: int               # index among the file's passages (across its documents, for .jsonl)
    text: str
    doc: str | None = None   # .jsonl: the document's `id`, else its line number
    title: str | None = None

    @property
    def pointer(self) -> dict[str, Any]:
        """Where the passage came from, for the generated record (and a reader who wants the original)."""
        extra = {k: v for k, v in (("doc", self.doc), ("title", self.title)) if v is not None}
        return {"file": self.file, "chunk": self.chunk, **extra}

    def as_item(self) -> Record:
        """The passage in the shape generation asks about: its text is the context; it has no question or label
        yet, and no parent in the prepared data (its id is the pointer, `file#chunk`)."""
        return Record(id=f"{self.file}#{self.chunk}", question="", contexts=[self.text], final_decision="")


def chunk_words(paragraphs: list[list[str]], size: int, overlap: int) -> list[list[str]]:
    """Pack whole paragraphs into chunks of at most `size` words; each chunk after the first starts with the
    last `overlap` words of the one before, so a fact cut at a boundary is whole in one of them. A chunk ends at
    a paragraph's end, except inside a paragraph too long for any chunk (more than size - overlap words), which
    fills the chunk it starts in and goes on in the next. So every chunk but the last has more than `overlap`
    words of its own: no chunk is only a repeat."""
    assert 0 <= overlap < size
    chunks: list[list[str]] = []
    cur: list[str] = []
    carried = 0  # words at the start of `cur` repeated from the previous chunk
    for para in paragraphs:
        while para:
            room = size - len(cur)
            if len(para) <= room:
                cur, para = cur + para, []
                continue
            if len(para) > size - overlap:  # fits no chunk whole: cut it at the budget
                cur, para = cur + para[:room], para[room:]
            chunks.append(cur)
            cur = cur[len(cur) - overlap:]
            carried = len(cur)
    if len(cur) > carried:
        chunks.append(cur)
    return chunks


def paragraphs(text: str, markdown: bool = False) -> list[list[str]]:
    if markdown:
        text = _MD_HEADING.sub("", text)
    return [p.split() for p in re.split(r"\n[ \t]*\n", text) if p.strip()]


def read_corpus(folder: Path, size: int, overlap: int) -> list[Passage]:
    """Every passage of the corpus, files in sorted order, chunks in document order."""
    passages = []
    for path in corpus_files(folder, "generate.grounded.corpus"):
        rel, n = path.relative_to(folder).as_posix(), 0
        for text, meta in documents(path):
            for words in chunk_words(paragraphs(text, markdown=path.suffix == ".md"), size, overlap):
                passages.append(Passage(rel, n, " ".join(words), **meta))
                n += 1
    return passages


def read_clean_corpus(folder: Path, size: int, overlap: int, leak: Contamination) -> tuple[list[Passage], int]:
    """The passages of `read_corpus` that do not leak the test split (a test-specific n-gram or a whole test
    question, `data.leakage`), and how many did. Passages keep their chunk numbers, so a pointer still names the
    passage in the file."""
    return leak.keep(read_corpus(folder, size, overlap), lambda s: s.text)
