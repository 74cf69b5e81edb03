"""The Teacher interface: a list of requests in, a list of completions out (same order).

Strategies and filters say what to ask (a prompt, or a conversation, and optionally the JSON schema the reply
must follow); this layer decides how: the request cache, concurrency, rate limits, retries, the budget, token
and cost accounting, and one progress bar. A backend only answers cache misses, reporting each answer as it
arrives so it is committed at once. A failed request never crashes the run: it comes back with text None and
the reason in `error`, and `raise_for_failures` decides at the end of the stage (after every answer received is
in the cache) whether the stage fails. A spent budget and an endpoint that refuses the key or the model (401, 403,
404) stop the run at once, also after every paid answer is in the cache.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from medaug.errors import MedaugError, progress_bars
from medaug.llm.cache import RequestCache
from medaug.llm.limits import Meter, estimate_tokens, max_prompt_tokens
from medaug.params import TeacherParams

log = logging.getLogger(__name__)

# what to do about each failure reason, for the stage's error message
HINTS = {
    "http_429": "rate limited after every retry: lower teacher.max_concurrency, or set teacher.rpm / teacher.tpm",
    "timeout": "no reply within teacher.timeout_s: raise it, or lower teacher.max_concurrency",
    "connection_error": "the endpoint dropped or refused connections: check OPENAI_BASE_URL and the server",
    "malformed_response": "the endpoint answered with a body that is not a chat completion",
    "not_sent": "not sent after a fatal error (above)",
    "cache_write_error": "answered, but the request cache could not store it (see the warning above)",
}


@dataclass
class Request:
    messages: list[dict[str, str]]
    """Chat messages ({"role", "content"}); a base model (local backend) reads their contents joined."""
    schema: dict[str, Any] | None = None
    """JSON schema the reply must follow (sent as response_format where the endpoint supports it)."""
    sample_index: int = 0
    """Which sample of the same request (another index, another seed, another cache entry)."""

    @classmethod
    def user(cls, prompt: str, sample_index: int = 0, schema: dict[str, Any] | None = None) -> Request:
        return cls([{"role": "user", "content": prompt}], schema, sample_index)

    @property
    def text(self) -> str:
        return "\n\n".join(m["content"] for m in self.messages)


@dataclass
class Completion:
    text: str | None          # None when the request failed after all attempts
    request_sha: str
    cached: bool
    input_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None  # reason when text is None, e.g. "http_429", "timeout", "malformed_response", "budget"
    cost_usd: float = 0.0     # what this request cost in all its attempts (for a cache hit: when it was paid)


# report(j, completion) — called by a backend once per request, as soon as its answer (or failure) is known
Report = Callable[[int, Completion], None]


@dataclass
class Usage:
    """What one stage asked of the teacher; goes into the stage metrics and MLflow."""
    requests: int = 0
    cache_hits: int = 0
    sent: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    """Paid in this run, failed attempts the provider bills included (cache hits cost nothing now)."""
    cost_usd_saved: float = 0.0
    """What the cache hits cost when they were first paid for."""
    errors: Counter = field(default_factory=Counter)

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{k: getattr(self, k) + getattr(other, k) for k in self.__dataclass_fields__})

    def __sub__(self, other: Usage) -> Usage:
        """What was asked between two snapshots of one teacher's usage (`dataclasses.replace` makes one)."""
        return Usage(**{k: getattr(self, k) - getattr(other, k) for k in self.__dataclass_fields__})

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "errors"}
        d["cost_usd"], d["cost_usd_saved"] = round(self.cost_usd, 6), round(self.cost_usd_saved, 6)
        return {**d, "errors": dict(sorted(self.errors.items()))}


class Teacher:
    backend = "base"
    version = 1
    """Part of every cache key: bump it when a code change alters what the backend returns for the same
    request (rendering, stopping, prefill), so old answers are not served for new behaviour."""

    def __init__(self, tp: TeacherParams, cache: RequestCache, meter: Meter | None = None):
        self.tp = tp
        self.cache = cache
        self.name = tp.model
        self.usage = Usage()
        self.meter = meter or Meter(tp.budget_usd)
        """The stage's budget: shared by every teacher of one stage (make_teacher(..., meter=))."""
        self.fatal: str | None = None
        """Set by a backend on an error no retry can fix (a refused key, an unknown model): nothing more is sent,
        and `complete` raises it once every answer received is cached."""

    @property
    def cache_model(self) -> str:
        """The model as the cache's model column names it (`medaug cache stats`)."""
        return self.tp.model

    def key_parts(self, r: Request) -> dict[str, Any]:
        """Everything that determines an answer. Prompt files are part of the message text, so editing one
        invalidates exactly the requests that used it."""
        tp = self.tp
        parts = dict(backend=self.backend, version=self.version, model=tp.model, messages=r.messages,
                     temperature=tp.temperature,
                     top_p=tp.top_p, max_new_tokens=tp.max_new_tokens, seed=tp.seed, sample_index=r.sample_index)
        if r.schema is not None:
            parts["schema"] = r.schema
        return parts

    def request_sha(self, r: Request) -> str:
        return self.cache.key(**self.key_parts(r))

    def worst_case(self, r: Request) -> float:
        """The most one attempt at `r` can cost: an upper bound of its prompt tokens plus max_new_tokens."""
        return self.tp.price.cost(max_prompt_tokens(r.text, len(r.messages)), self.tp.max_new_tokens)

    def reserve(self, r: Request) -> float:
        """Reserve an attempt's worst-case cost right before sending it; raises BudgetExceeded if it could take
        the stage past its budget."""
        cost = self.worst_case(r)
        self.meter.reserve(cost)
        return cost

    def settle(self, reserved: float, input_tokens: float, output_tokens: float) -> float:
        """Replace an attempt's reservation by what it cost at these token counts; returns the cost."""
        return self.meter.settle(reserved, self.tp.price.cost(input_tokens, output_tokens))

    def estimate(self, requests: list[Request]) -> dict[str, Any]:
        """What `complete` would send, without sending anything (for --dry-run)."""
        todo = [r for r in requests if self.cache.get(self.request_sha(r)) is None]
        tokens_in = sum(estimate_tokens(r.text) for r in todo)
        tokens_out = len(todo) * self.tp.max_new_tokens
        return {"requests": len(requests), "cached": len(requests) - len(todo), "to_send": len(todo),
                "input_tokens_est": tokens_in, "output_tokens_max": tokens_out,
                "cost_usd_max": round(sum(self.worst_case(r) for r in todo), 6)}

    def complete(self, requests: list[Request | str], sample_index: int = 0, desc: str = "") -> list[Completion]:
        reqs = [r if isinstance(r, Request) else Request.user(r, sample_index) for r in requests]
        shas = [self.request_sha(r) for r in reqs]
        results: list[Completion | None] = [None] * len(reqs)
        todo = []
        u = self.usage
        for i, sha in enumerate(shas):
            hit = self.cache.get(sha)
            if hit is None:
                todo.append(i)
            else:
                results[i] = Completion(hit["text"], sha, True, hit.get("input_tokens", 0),
                                        hit.get("output_tokens", 0), cost_usd=hit.get("cost_usd", 0.0))
                u.cost_usd_saved += results[i].cost_usd
        u.requests += len(reqs)
        u.cache_hits += len(reqs) - len(todo)
        if not todo:
            return results  # type: ignore[return-value]

        self._prepare()
        failed = 0
        bar = tqdm(total=len(reqs), initial=len(reqs) - len(todo), desc=desc or f"teacher {self.name}",
                   unit="req", file=sys.stderr, dynamic_ncols=True, disable=not progress_bars())
        bar.set_postfix(cached=len(reqs) - len(todo), failed=0, usd=f"{u.cost_usd:.4f}", refresh=False)

        def report(j: int, c: Completion) -> None:
            nonlocal failed
            i = todo[j]
            c.request_sha = shas[i]
            u.cost_usd += c.cost_usd
            if c.text is not None:
                c.text = valid_unicode(c.text)
                try:
                    self.cache.put(c.request_sha, {"text": c.text, "input_tokens": c.input_tokens,
                                                   "output_tokens": c.output_tokens, "cost_usd": c.cost_usd},
                                   backend=self.backend, model=self.cache_model)
                except Exception as e:  # this item's problem: the other answers in flight are kept
                    log.warning(f"teacher {self.name}: could not cache an answer ({type(e).__name__}: {e})")
                    c.text, c.error = None, "cache_write_error"
            if c.text is not None:
                u.input_tokens += c.input_tokens
                u.output_tokens += c.output_tokens
            else:
                failed += 1
                u.errors[c.error] += 1
            u.sent += c.error not in ("budget", "not_sent")
            results[i] = c
            bar.set_postfix(cached=len(reqs) - len(todo), failed=failed, usd=f"{u.cost_usd:.4f}", refresh=False)
            bar.update(1)

        try:
            self._complete([reqs[i] for i in todo], [shas[i] for i in todo], report)
        finally:
            bar.close()
            self.cache.flush()  # every answer received is committed before anything is raised
        assert all(c is not None for c in results), "backend did not answer every request"
        u.failed += failed
        if self.fatal:
            raise MedaugError(f"{self.fatal}; nothing more was sent, and the {len(todo) - failed} answers received "
                              f"are kept in {self.tp.cache}")
        if self.meter.refused:
            raise MedaugError(
                f"teacher.budget_usd = {self.meter.budget:g} reached: ${self.meter.spent:.4f} spent in this stage; "
                f"{self.meter.refused} requests were not sent, because their worst case (prompt + "
                f"max_new_tokens = {self.tp.max_new_tokens}) could pass the budget. Every paid answer is kept in "
                f"{self.tp.cache}: raise teacher.budget_usd (or ask for less) and rerun to pay only for the rest")
        errors = Counter(c.error for c in results if c is not None and c.text is None)
        if errors:
            log.warning(f"teacher {self.name}: {sum(errors.values())} of {len(todo)} requests failed "
                        f"({', '.join(f'{k}: {v}' for k, v in errors.most_common())})")
        return results  # type: ignore[return-value]

    def _prepare(self) -> None:
        """Called before the first cache miss is sent: load a model, check credentials."""

    def _complete(self, reqs: list[Request], shas: list[str], report: Report) -> None:
        """Answer every request (cache misses only), calling report(j, Completion) once per request. Call
        self.reserve(request) right before sending one and self.settle(...) once its cost is known; on
        BudgetExceeded report it failed with error "budget"."""
        raise NotImplementedError


def valid_unicode(text: str) -> str:
    """`text` with any lone surrogate (a reply's raw bytes or a `\\ud83d` escape decoded alone) replaced by
    U+FFFD, so it can be cached and written as UTF-8; the replies' validation then rejects it."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def raise_for_failures(stage: str, usage: Usage, max_failed_share: float) -> int:
    """After a stage has asked everything (every answer received is cached): fail when more of its requests
    failed, for a transport or HTTP reason after every retry, than `teacher.max_failed_share` allows. The error
    has one line per reason with its count; a rerun re-sends exactly the failed requests. Content rejects (a
    reply still unusable after repair) are not failures. Returns the number of failed requests (accepted)."""
    failed = sum(usage.errors.values())
    if not failed:
        return 0
    share = failed / max(usage.requests, 1)
    reasons = "\n".join(f"  {reason}: {n}" + (f" ({HINTS[reason]})" if reason in HINTS else "")
                         for reason, n in usage.errors.most_common())
    if share <= max_failed_share:
        log.warning(f"{stage}: {failed} of {usage.requests} teacher requests failed ({share:.1%}, within "
                    f"teacher.max_failed_share = {max_failed_share:g}); their items are left out:\n{reasons}")
        return failed
    raise MedaugError(f"{stage}: {failed} of {usage.requests} teacher requests failed after every retry. Every "
                      f"answer received is cached, so a rerun (dvc repro) re-sends only these {failed}; to accept "
                      f"a share of failures on purpose, set teacher.max_failed_share (now {max_failed_share:g}):"
                      f"\n{reasons}")


def make_teacher(tp: TeacherParams, root: Path, meter: Meter | None = None) -> Teacher:
    """A teacher for `tp`; stages with several teachers pass one `meter` so the budget caps the whole stage. Its
    request cache is the project's (paths.project_root of `root`): a temp or queued experiment reuses and fills
    it instead of paying again in its throw-away copy."""
    from medaug.paths import project_root

    cache = RequestCache(project_root(Path(root)) / tp.cache)
    if tp.backend == "openai":
        from medaug.llm.openai_backend import OpenAITeacher
        return OpenAITeacher(tp, cache, meter)
    from medaug.llm.local_backend import LocalTeacher
    return LocalTeacher(tp, cache, meter)
