"""The Teacher interface: a list of prompts in, a list of completions out (same order).

The base class does the caching (one request cache for every backend); a backend only answers cache misses,
reporting each answer as it arrives so it is committed at once. A failed request never crashes the run: it
comes back with text None and the reason in `error`.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from medaug.llm.cache import RequestCache
from medaug.params import TeacherParams


@dataclass
class Completion:
    text: str | None          # None when the request failed after all attempts
    request_sha: str
    cached: bool
    input_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None  # reason when text is None, e.g. "http_429", "timeout", "malformed_response"


# report(j, completion) — called by a backend once per prompt, as soon as its answer (or failure) is known
Report = Callable[[int, Completion], None]


class Teacher:
    backend = "base"

    def __init__(self, tp: TeacherParams, cache: RequestCache):
        self.tp = tp
        self.cache = cache
        self.name = tp.model

    def request_sha(self, prompt: str, sample_index: int) -> str:
        tp = self.tp
        return self.cache.key(backend=self.backend, model=tp.model, prompt=prompt, temperature=tp.temperature,
                              top_p=tp.top_p, max_new_tokens=tp.max_new_tokens, seed=tp.seed,
                              sample_index=sample_index)

    def complete(self, prompts: list[str], sample_index: int = 0) -> list[Completion]:
        shas = [self.request_sha(p, sample_index) for p in prompts]
        results: list[Completion | None] = [None] * len(prompts)
        todo = []
        for i, sha in enumerate(shas):
            hit = self.cache.get(sha)
            if hit is None:
                todo.append(i)
            else:
                results[i] = Completion(hit["text"], sha, True, hit.get("input_tokens", 0), hit.get("output_tokens", 0))
        if not todo:
            return results  # type: ignore[return-value]

        self._prepare()
        bar = tqdm(total=len(todo), desc=f"teacher {self.name}", unit="req", file=sys.stderr)

        def report(j: int, c: Completion) -> None:
            i = todo[j]
            c.request_sha = shas[i]
            if c.text is not None:
                self.cache.put(c.request_sha, {"text": c.text, "input_tokens": c.input_tokens,
                                               "output_tokens": c.output_tokens})
            results[i] = c
            bar.update(1)

        try:
            self._complete([prompts[i] for i in todo], sample_index, report)
        finally:
            bar.close()
        errors = Counter(c.error for c in results if c is not None and c.text is None)
        if errors:
            print(f"teacher {self.name}: {sum(errors.values())} of {len(todo)} requests failed "
                  f"({', '.join(f'{k}: {v}' for k, v in errors.most_common())})", file=sys.stderr)
        assert all(c is not None for c in results), "backend did not answer every prompt"
        return results  # type: ignore[return-value]

    def _prepare(self) -> None:
        """Called before the first cache miss is sent: load a model, check credentials."""

    def _complete(self, prompts: list[str], sample_index: int, report: Report) -> None:
        """Answer every prompt (cache misses only), calling report(j, Completion) once per prompt."""
        raise NotImplementedError


def make_teacher(tp: TeacherParams, root: Path) -> Teacher:
    cache = RequestCache(Path(root) / tp.cache)
    if tp.backend == "openai":
        from medaug.llm.openai_backend import OpenAITeacher
        return OpenAITeacher(tp, cache)
    from medaug.llm.local_backend import LocalTeacher
    return LocalTeacher(tp, cache)
