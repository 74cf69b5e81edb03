"""Teacher backend for any OpenAI-compatible chat endpoint (OpenAI, Azure, vLLM, Ollama, TGI, llama.cpp).

URL and key come from the environment (OPENAI_BASE_URL, OPENAI_API_KEY), never from params, and the key is
never logged; a base URL with credentials in it (http://user:pass@host) is refused, since httpx would log them
and send them instead of the key. `max_concurrency` requests in flight, under optional RPM/TPM limits; retries on
408/429/5xx, timeouts, connection errors and malformed responses with exponential backoff + jitter, honouring
Retry-After; at most `max_attempts` attempts in all. 401, 403 and 404 (a refused key, a model the endpoint does
not serve) stop the run: nothing more is sent. A reply that must be JSON is asked for with `response_format`
(`teacher.response_format`: json_schema, else json_object, else none: the prompt states the format anyway). An
endpoint that refuses it answers with some 4xx or 5xx whose body names `response_format` or `json_schema` (OpenAI
and vLLM a 400, pydantic servers a 422, others a 500): the request is sent again at once one step down
(json_schema -> json_object -> none), the step is not an attempt, and the endpoint (base URL and model) keeps
that format for the rest of the process.

Spend: each attempt reserves its worst case right before it is sent, and settles at the tokens of its reply's
`usage` (any 200, even one with a malformed body or null content, is billed; without usage, the estimate). An
attempt the client gave up on (a timeout, a connection lost after the request went out) counts at its worst case:
the provider may bill it. HTTP errors cost nothing.

Batch mode (teacher.batch): the requests go out as one provider batch (/v1/files, /v1/batches) and are collected
when it ends; see `_complete_batch`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import functools
import json
import logging
import os
import random
import ssl
import sys
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
from tqdm import tqdm

from medaug.errors import MedaugError, progress_bars
from medaug.llm.base_prompt import cut, prefill, prompt_text
from medaug.llm.limits import BudgetExceeded, Pacer, estimate_tokens
from medaug.llm.teacher import Completion, Report, Request, Teacher

log = logging.getLogger(__name__)

MAX_WAIT_S = 60.0  # longest single wait between attempts, whatever Retry-After says
RETRIED = (408, 429)  # and every 5xx


def base_url() -> str | None:
    """OPENAI_BASE_URL, refused when it carries credentials: they would replace the key and show in logs."""
    url = os.environ.get("OPENAI_BASE_URL") or None
    if url and "@" in (urllib.parse.urlsplit(url).netloc or ""):
        raise MedaugError(f"OPENAI_BASE_URL ({redact(url)}) holds credentials (user:password@host): remove them "
                          f"and put the key in OPENAI_API_KEY (sent as a bearer token, never logged)")
    return url


def redact(url: str) -> str:
    """The URL with any user:password replaced by ***, for messages."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def usage_tokens(usage: Any) -> tuple[int, int] | None:
    """(prompt, completion) tokens of a reply's `usage`, or None when it is missing or not the expected shape."""
    if not isinstance(usage, dict):
        return None
    counts = [usage.get("prompt_tokens"), usage.get("completion_tokens")]
    if not all(isinstance(n, (int, float)) and not isinstance(n, bool) and 0 <= n < 1e12 for n in counts):
        return None
    return int(counts[0]), int(counts[1])


def retry_after_s(headers) -> float | None:
    """Seconds the server asks us to wait (retry-after-ms, retry-after as seconds or as an HTTP date)."""
    if headers is None:
        return None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """Built once per process: loading the CA bundle costs 50-100 ms, paid by every new client otherwise."""
    return httpx2.create_ssl_context()


FORMATS = ("json_schema", "json_object", "none")
"""teacher.response_format, from the most to the least an endpoint must support."""
_formats: dict[tuple[str, str], str] = {}
"""The response_format each endpoint (base URL, model) was stepped down to in this process, so that after one
refusal the rest of the stage (every teacher object on that endpoint) starts there."""
_completions: set[tuple[str, str]] = set()
"""The endpoints (base URL, model) that refused a chat request for want of a chat template in this process
(teacher.endpoint auto): asked through /v1/completions from then on."""
_chat_only: set[tuple[str, str]] = set()
"""The endpoints whose /v1/completions failed the one probe after a chat 5xx: never probed again."""


def lacks_chat_template(e: openai.APIStatusError) -> bool:
    """An HTTP error saying the served model has no chat template (vLLM and llama.cpp say so, naming it)."""
    text = (str(e.message or "") + str(e.body or "")).lower()
    return "chat template" in text or "chat_template" in text


def crashed(e: openai.APIStatusError) -> bool:
    """A 5xx whose body is not JSON: an exception the server did not handle (`transformers serve` answers a chat
    request for a model without a chat template so: "Internal Server Error"), not an API's overload answer."""
    return e.status_code >= 500 and not isinstance(e.body, (dict, list))


def refuses_response_format(e: openai.APIStatusError) -> bool:
    """Any HTTP error whose body names the structured-output parameter: servers refuse it with 400, 422 or 500."""
    text = str(e.message or "") + str(e.body or "")
    return "response_format" in text or "json_schema" in text


class OpenAITeacher(Teacher):
    backend = "openai"

    @property
    def endpoint(self) -> tuple[str, str]:
        return redact(base_url() or "https://api.openai.com/v1"), self.tp.model

    @property
    def response_format(self) -> str:
        """What this endpoint is asked with now: teacher.response_format, or where a refusal stepped it down to."""
        return _formats.get(self.endpoint, self.tp.response_format)

    async def _probe(self, client: openai.AsyncOpenAI, r: Request,
                     reserved: float) -> tuple[Completion | None, float | None]:
        """After a bare 5xx from chat (teacher.endpoint auto): `r` once through /v1/completions, in the same slot and
        on the same budget reservation (the request is the same size). (Its answer, what it cost) when the server
        answers there, and the endpoint stays on completions; else (None, the cost of a 200 without a usable reply,
        or None for no 200), and the endpoint is never probed again: the chat error takes its usual course."""
        body = self._body(r, completion=True)
        for _ in range(2):
            try:
                resp = await client.post("/completions", body=body, cast_to=httpx2.Response)
                break
            except openai.APIConnectionError:  # the crashed server closed the kept-alive connection: a new one
                continue
            except openai.APIStatusError:
                _chat_only.add(self.endpoint)
                return None, None
        else:
            return None, None  # the connection lost twice: nothing learnt, the chat error takes its course
        text, n_in, n_out, paid = self._read(resp.content, r, reserved, completion=True)
        if text is None:
            _chat_only.add(self.endpoint)
            return None, paid
        self._to_completions("its chat requests fail with a bare HTTP 5xx and its /v1/completions answers")
        return Completion(text, "", False, n_in, n_out, cost_usd=paid), paid

    def _to_completions(self, why: str) -> None:
        if self.endpoint not in _completions:
            _completions.add(self.endpoint)
            log.warning(f"teacher {self.name}: {self.endpoint[0]}: {why}; asking through /v1/completions as a base "
                        f"model from now on (teacher.endpoint: completions starts there)")

    def _step_down(self, refused: str, e: openai.APIStatusError) -> None:
        """The endpoint refused `refused`: ask one format lower from now on (once, however many requests in
        flight were refused with it)."""
        if self.response_format != refused:
            return  # another request in flight stepped it down already
        lower = FORMATS[FORMATS.index(refused) + 1]
        _formats[self.endpoint] = lower
        log.warning(f"teacher {self.name}: {self.endpoint[0]} refused response_format {refused} (HTTP "
                    f"{e.status_code}); asking with {lower} from now on (set teacher.response_format: {lower} to "
                    f"start there)")

    @property
    def completions(self) -> bool:
        """Ask through /v1/completions (a base model), not /v1/chat/completions."""
        return self.tp.endpoint == "completions" or (self.tp.endpoint == "auto" and self.endpoint in _completions)

    def key_parts(self, r: Request) -> dict:
        parts = super().key_parts(r)
        if r.schema is not None:
            parts["response_format"] = self.tp.response_format
        if self.tp.endpoint != "chat":  # chat: the keys of the answers cached before the setting existed
            parts["endpoint"] = self.tp.endpoint
        return parts

    def _prepare(self) -> None:
        base_url()
        if not os.environ.get("OPENAI_API_KEY"):
            raise MedaugError("teacher.backend is 'openai' but the environment variable OPENAI_API_KEY is not set "
                              "(export your key; for a local server any non-empty string works)")

    def _complete(self, reqs: list[Request], shas: list[str], report: Report) -> None:
        if self.tp.batch:
            self._complete_batch(reqs, shas, report)
        else:
            asyncio.run(self._run(reqs, report))

    def _complete_batch(self, reqs: list[Request], shas: list[str], report: Report) -> None:
        """teacher.batch: the requests through the provider's Batch API. Batches this cache already submitted for
        some of these keys (a killed earlier run) are polled again; the rest go out as one new batch, recorded in
        the cache before anything is awaited. Each request holds its worst case of the budget from submission
        until its result, which settles at its usage at batch prices; a request the batch did not answer (an error
        line, an expired batch, a key missing from both files) is a failure `batch_<code>`, re-sent in a new batch
        by the next run."""
        client = openai.OpenAI(api_key=os.environ["OPENAI_API_KEY"], base_url=base_url(), timeout=self.tp.timeout_s,
                               max_retries=self.tp.max_attempts - 1,
                               http_client=openai.DefaultHttpxClient(verify=ssl_context()))
        index = {sha: j for j, sha in enumerate(shas)}
        where, model = self.endpoint
        reserved: dict[int, float] = {}

        def hold(js: list[int]) -> list[int]:
            """Reserve each request's worst case; those the budget refuses are reported and left out."""
            held = []
            for j in js:
                try:
                    reserved[j] = self.reserve(reqs[j])
                    held.append(j)
                except BudgetExceeded:
                    report(j, Completion(None, "", False, error="budget"))
            return held

        jobs: list[tuple[str, list[int]]] = []
        claimed: set[int] = set()  # requests an open batch already covers (one batch per request)
        for batch_id, keys in self.cache.open_batches(where, model):
            covered = [j for j in dict.fromkeys(index[k] for k in keys if k in index) if j not in claimed]
            claimed.update(covered)  # held or refused by the budget, a request is answered once
            mine = hold(covered)
            if mine:
                log.info(f"teacher {self.name}: polling batch {batch_id} again ({len(mine)} requests, submitted by an "
                         f"earlier run)")
                jobs.append((batch_id, mine))
        new = hold([j for j in range(len(reqs)) if j not in claimed])
        try:
            with client:
                if new:
                    jobs.append((self._submit(client, [reqs[j] for j in new], [shas[j] for j in new]), new))
                for batch_id, js in jobs:
                    for j, c in self._collect(client, batch_id, {shas[j]: j for j in js}, reqs, reserved):
                        report(j, c)
                    self.cache.close_batch(batch_id)
        except (openai.APIStatusError, openai.APIConnectionError) as e:  # the Batch API itself: one line, the fix
            kept = (f"; the batches already submitted are kept in {self.tp.cache}, and a rerun polls them instead of "
                    f"paying again") if self.cache.open_batches(where, model) else ""
            if isinstance(e, openai.APIConnectionError):
                raise MedaugError(f"teacher {self.name}: the Batch API at {where} could not be reached ({e}); rerun "
                                  f"when it can{kept}") from None
            fix = (self._fatal(e.status_code, e) or "") if e.status_code in (401, 403) else \
                "it may not offer the Batch API: set teacher.batch: false" if e.status_code in (404, 405) else \
                "rerun to try again"
            raise MedaugError(f"teacher {self.name}: the Batch API at {where} answered HTTP {e.status_code} "
                              f"({str(e.message)[:200]}); {fix}{kept}") from None

    def _batch_url(self) -> str:
        return "/v1/completions" if self.tp.endpoint == "completions" else "/v1/chat/completions"

    def _submit(self, client: openai.OpenAI, reqs: list[Request], shas: list[str]) -> str:
        """Upload the batch input file (one line per request, custom_id = its cache key) and create the batch;
        the batch and its keys are in the cache when this returns."""
        url = self._batch_url()
        lines = [json.dumps({"custom_id": sha, "method": "POST", "url": url,
                             "body": self._body(r, completion=url == "/v1/completions")})
                 for r, sha in zip(reqs, shas)]
        upload = client.files.create(file=("medaug-batch.jsonl", ("\n".join(lines) + "\n").encode()),
                                     purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint=url, completion_window="24h",
                                      metadata={"medaug": "teacher"})
        self.cache.add_batch(batch.id, *self.endpoint, list(shas))
        log.info(f"teacher {self.name}: submitted batch {batch.id} ({len(reqs)} requests)")
        return batch.id

    def _collect(self, client: openai.OpenAI, batch_id: str, keys: dict[str, int], reqs: list[Request],
                 reserved: dict[int, float]) -> Iterator[tuple[int, Completion]]:
        """Poll the batch until it ends (its own counts on a progress bar), then yield (request index, Completion)
        for every key it covers: its answer, or the failure its output or error file names."""
        bar = tqdm(total=len(keys), desc=f"batch {batch_id}", unit="req", file=sys.stderr, dynamic_ncols=True,
                   disable=not progress_bars())
        try:
            while True:
                batch = client.batches.retrieve(batch_id)
                counts = batch.request_counts
                if counts is not None:
                    bar.n = counts.completed + counts.failed
                    bar.set_postfix(status=batch.status, failed=counts.failed, refresh=True)
                if batch.status in ("completed", "failed", "expired", "cancelled"):
                    break
                time.sleep(self.tp.batch_poll_s)
        finally:
            bar.close()
        lines = []
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                lines += [json.loads(x) for x in client.files.content(file_id).text.splitlines() if x.strip()]
        seen = set()
        for line in lines:
            j = keys.get(line.get("custom_id"))
            if j is None or j in seen:
                continue
            seen.add(j)
            response = line.get("response") or {}
            if response.get("status_code") == 200:
                text, n_in, n_out, paid = self._read(json.dumps(response.get("body")).encode(), reqs[j],
                                                     reserved.pop(j), self._batch_url() == "/v1/completions")
                yield j, Completion(text, "", False, n_in, n_out, cost_usd=paid,
                                    error=None if text is not None else "malformed_response")
            else:
                code = (line.get("error") or {}).get("code") or response.get("status_code") or "error"
                self.meter.settle(reserved.pop(j), 0.0)  # an error line is not billed
                yield j, Completion(None, "", False, error=f"batch_{code}")
        for j in set(keys.values()) - seen:  # in neither file: an expired or failed batch never ran it
            self.meter.settle(reserved.pop(j), 0.0)
            yield j, Completion(None, "", False, error=f"batch_{batch.status}")

    async def _run(self, reqs: list[Request], report: Report) -> None:
        client = openai.AsyncOpenAI(api_key=os.environ["OPENAI_API_KEY"], base_url=base_url(),
                                    timeout=self.tp.timeout_s, max_retries=0,
                                    http_client=openai.DefaultAsyncHttpxClient(verify=ssl_context()))
        sem = asyncio.Semaphore(self.tp.max_concurrency)
        rpm = Pacer(self.tp.rpm) if self.tp.rpm else None
        tpm = Pacer(self.tp.tpm) if self.tp.tpm else None
        rng = random.Random(self.tp.seed)  # jitter only; never affects what is generated

        async def one(j: int) -> None:
            try:
                c = await self._request(client, sem, rpm, tpm, rng, reqs[j])
            except Exception as e:  # a local fault in this request must not cancel the others, already paid for
                c = Completion(None, "", False, error=f"local_error:{type(e).__name__}")
                log.warning(f"teacher {self.name}: a request failed locally ({type(e).__name__}: {e})")
            report(j, c)

        async with client:
            await asyncio.gather(*(one(j) for j in range(len(reqs))))

    def _body(self, r: Request, completion: bool = False) -> dict:
        """The request body: a chat request, or (`completion`, or the endpoint is on completions) a completion."""
        tp = self.tp
        sampling = dict(model=tp.model, temperature=tp.temperature, top_p=tp.top_p, max_tokens=tp.max_new_tokens,
                        seed=tp.seed + r.sample_index)
        if self.completions or completion:  # the local backend's prompt: plain text, a JSON reply's opening prefilled
            pre = prefill(r)
            return dict(prompt=prompt_text(r) + (" " + pre if pre else ""), stop=["\n\n"], **sampling)
        body = dict(messages=r.messages, **sampling)
        fmt = self.response_format
        if r.schema is not None and fmt != "none":
            body["response_format"] = {"type": "json_object"} if fmt == "json_object" else \
                {"type": "json_schema", "json_schema": {"name": "reply", "schema": r.schema, "strict": True}}
        return body

    def _fatal(self, status: int, e: openai.APIStatusError) -> str | None:
        """The message for an error no retry can fix, or None."""
        where = redact(os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1")
        code = e.code if isinstance(getattr(e, "code", None), str) else ""
        if status == 401:
            return f"HTTP 401 from {where}: the endpoint refused OPENAI_API_KEY; export a valid key"
        if status == 403:
            return (f"HTTP 403 from {where}: OPENAI_API_KEY may not use teacher.model {self.tp.model!r}; use a key "
                    f"with access to it, or another teacher.model in params.yaml")
        if status == 404 or code == "model_not_found":
            return (f"HTTP {status} from {where}: teacher.model {self.tp.model!r} is not served there (or "
                    f"OPENAI_BASE_URL lacks its /v1 path); GET {where.rstrip('/')}/models lists the models; fix "
                    f"teacher.model in params.yaml or OPENAI_BASE_URL")
        return None

    def _read(self, content: bytes, r: Request, reserved: float,
              completion: bool = False) -> tuple[str | None, int, int, float]:
        """(text or None, prompt tokens, completion tokens, cost) of a 200 reply: billed from its usage even when
        the body is malformed or has no content, estimated when there is no usable usage."""
        try:
            data = json.loads(content)
        except (ValueError, RecursionError):
            data = None
        text = None
        try:
            choice = data["choices"][0]  # type: ignore[index]
            text = choice["text"] if completion else choice["message"]["content"]
        except (TypeError, KeyError, IndexError):
            pass
        if not isinstance(text, str):
            text = None
        elif completion:  # cut where the item ends, as the local backend does
            pre = prefill(r)
            done = cut(text, prompt_text(r).rsplit("\n", 1)[-1], pre)
            text = done if done is not None else (pre + text).strip()  # None: stop, EOS or max_tokens came first
        tokens = usage_tokens(data.get("usage") if isinstance(data, dict) else None)
        if tokens is None:
            tokens = estimate_tokens(r.text), estimate_tokens(text) if text is not None else self.tp.max_new_tokens
        return text, tokens[0], tokens[1], self.settle(reserved, *tokens)

    async def _request(self, client: openai.AsyncOpenAI, sem: asyncio.Semaphore, rpm: Pacer | None,
                       tpm: Pacer | None, rng: random.Random, r: Request) -> Completion:
        tp = self.tp
        error = "unknown"
        tokens = estimate_tokens(r.text) + tp.max_new_tokens
        cost = 0.0  # what every attempt at this request cost, failed ones the provider bills included
        attempt = 0
        while attempt < tp.max_attempts:
            attempt += 1
            wait = None
            async with sem:
                if self.fatal:
                    return Completion(None, "", False, error="not_sent", cost_usd=cost)
                if rpm:
                    await rpm.take()
                if tpm:
                    await tpm.take(tokens)
                try:
                    reserved = self.reserve(r)  # only now: a queued request holds back nothing of the budget
                except BudgetExceeded:
                    return Completion(None, "", False, error="budget", cost_usd=cost)
                body = self._body(r)
                spent = 0.0  # an HTTP error is not billed
                try:
                    # the raw endpoint (a documented openai-python path): parsing into typed models costs more
                    # CPU than the request itself at high concurrency
                    path = "/completions" if "prompt" in body else "/chat/completions"
                    resp = await client.post(path, body=body, cast_to=httpx2.Response)
                    text, n_in, n_out, paid = self._read(resp.content, r, reserved, completion="prompt" in body)
                    reserved, cost = 0.0, cost + paid  # settled at its usage
                    if text is not None:
                        return Completion(text, "", False, n_in, n_out, cost_usd=cost)
                    error = "malformed_response"  # bad JSON body or a reply without choices/content
                except openai.APIStatusError as e:
                    error = f"http_{e.status_code}"
                    if "messages" in body and self.tp.endpoint == "auto" and self.endpoint not in _chat_only:
                        if lacks_chat_template(e):
                            self._to_completions(f"it has no chat template for the model (HTTP {e.status_code})")
                            attempt -= 1  # and this request again at once
                            continue
                        if crashed(e):
                            probed, paid = await self._probe(client, r, reserved)
                            if paid is not None:  # a 200: the reservation is settled at its usage
                                reserved, cost = 0.0, cost + paid
                            if probed is not None:
                                return dataclasses.replace(probed, cost_usd=cost)
                    if "response_format" in body and refuses_response_format(e):
                        self._step_down(body["response_format"]["type"], e)  # and this request again at once
                        attempt -= 1
                        continue
                    if (fatal := self._fatal(e.status_code, e)) is not None:
                        self.fatal = self.fatal or fatal
                        return Completion(None, "", False, error=error, cost_usd=cost)
                    if e.status_code not in RETRIED and e.status_code < 500:
                        return Completion(None, "", False, error=error, cost_usd=cost)  # retrying won't help
                    wait = retry_after_s(e.response.headers)
                except openai.APITimeoutError:
                    error, spent = "timeout", reserved  # the provider may have run it
                except openai.APIConnectionError as e:
                    error = "connection_error"
                    spent = 0.0 if isinstance(e.__cause__, httpx2.ConnectError) else reserved  # sent, then lost
                finally:
                    if reserved:
                        cost += self.meter.settle(reserved, spent)
            if attempt < tp.max_attempts:
                backoff = tp.backoff_s * 2 ** (attempt - 1) * (0.5 + rng.random())
                await asyncio.sleep(min(MAX_WAIT_S, max(backoff, wait or 0.0)))
        return Completion(None, "", False, error=error, cost_usd=cost)
