"""MinHash signatures of word shingles, and LSH banding to find near-duplicate candidates without comparing
every pair (Broder 1997; Leskovec, Rajaraman & Ullman, Mining of Massive Datasets, ch. 3)."""

from __future__ import annotations

import zlib
from collections import defaultdict

import numpy as np

from medaug.data.text import words

_PRIME = np.uint64((1 << 61) - 1)
_MASK = np.uint64(0xFFFFFFFF)


def shingles(text: str, k: int) -> set[tuple[str, ...]]:
    """Word k-grams of the normalized text; a text shorter than k words is one shingle (so short questions
    still compare, instead of all having the empty set)."""
    w = words(text)
    return {tuple(w[i:i + k]) for i in range(len(w) - k + 1)} or {tuple(w)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class MinHasher:
    """`num_perm` seeded hash functions h(x) = (a x + b) mod p over crc32 shingle hashes: the same text gives
    the same signature in every process (Python's own `hash` is salted per process)."""

    def __init__(self, num_perm: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, int(_PRIME), num_perm, dtype=np.uint64)
        self.b = rng.integers(0, int(_PRIME), num_perm, dtype=np.uint64)

    def signature(self, shingle_set: set[tuple[str, ...]]) -> np.ndarray:
        x = np.array([zlib.crc32(" ".join(s).encode()) for s in shingle_set], dtype=np.uint64)[:, None]
        return (((x * self.a + self.b) % _PRIME) & _MASK).min(axis=0)


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """The share of hash functions whose minimum agrees: an unbiased estimate of the Jaccard similarity."""
    return float(np.mean(sig_a == sig_b))


def rows_per_band(threshold: float, num_perm: int, recall: float = 0.999) -> int:
    """The most rows per band (fewest spurious candidates) with which a pair at `threshold` still shares a
    band with probability >= `recall`: P = 1 - (1 - t^r)^b, b = num_perm // r."""
    return max(r for r in range(1, num_perm + 1) if 1 - (1 - threshold ** r) ** (num_perm // r) >= recall)


class LSH:
    """Signatures cut into bands of r rows; two keys are candidates when any band is identical."""

    def __init__(self, num_perm: int, rows: int):
        self.rows, self.bands = rows, num_perm // rows
        self.buckets: list[dict[bytes, list]] = [defaultdict(list) for _ in range(self.bands)]

    def _keys(self, sig: np.ndarray) -> list[bytes]:
        return [sig[i * self.rows:(i + 1) * self.rows].tobytes() for i in range(self.bands)]

    def add(self, key, sig: np.ndarray) -> None:
        for bucket, band in zip(self.buckets, self._keys(sig)):
            bucket[band].append(key)

    def candidates(self, sig: np.ndarray) -> set:
        return {key for bucket, band in zip(self.buckets, self._keys(sig)) for key in bucket.get(band, ())}


class NearDuplicates:
    """The texts added so far, asked whether a new text has one with shingle Jaccard >= `threshold`. LSH on
    MinHash signatures picks the candidates (no scan of every text); the decision is the exact Jaccard of the
    candidates' shingle sets, so a pair just below the threshold is never dropped by estimation noise."""

    def __init__(self, threshold: float, k: int, num_perm: int, seed: int = 0):
        self.threshold, self.k = threshold, k
        self.hasher = MinHasher(num_perm, seed)
        self.lsh = LSH(num_perm, rows_per_band(threshold, num_perm))
        self.sets: list[set[tuple[str, ...]]] = []

    def add(self, text: str) -> None:
        s = shingles(text, self.k)
        self.lsh.add(len(self.sets), self.hasher.signature(s))
        self.sets.append(s)

    def match(self, text: str) -> bool:
        s = shingles(text, self.k)
        return any(jaccard(s, self.sets[i]) >= self.threshold for i in self.lsh.candidates(self.hasher.signature(s)))
