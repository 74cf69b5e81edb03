"""Teacher backend for any OpenAI-compatible chat endpoint (OpenAI, Azure, vLLM, Ollama, TGI, llama.cpp).

URL and key come from the environment (OPENAI_BASE_URL, OPENAI_API_KEY), never from params, and the key is
never logged. `max_concurrency` requests in flight, under optional RPM/TPM limits; retries on 408/429/5xx,
timeouts, connection errors and malformed responses with exponential backoff + jitter, honouring Retry-After;
at most `max_attempts` attempts in all. A reply that must be JSON is asked for with `response_format`; an
endpoint that refuses the parameter gets the request again without it (the prompt states the format anyway).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import os
import random
import ssl
import time

import httpx2
import openai

from medaug.errors import MedaugError
from medaug.llm.limits import BudgetExceeded, Pacer, estimate_tokens
from medaug.llm.teacher import Completion, Report, Request, Teacher

MAX_WAIT_S = 60.0  # longest single wait between attempts, whatever Retry-After says


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


def refuses_response_format(e: openai.APIStatusError) -> bool:
    return e.status_code in (400, 422) and "response_format" in str(e.message or "") + str(e.body or "")


class OpenAITeacher(Teacher):
    backend = "openai"
    structured = True  # falls to False once the endpoint refuses response_format

    def key_parts(self, r: Request) -> dict:
        parts = super().key_parts(r)
        if r.schema is not None:
            parts["response_format"] = self.tp.response_format
        return parts

    def _prepare(self) -> None:
        if not os.environ.get("OPENAI_API_KEY"):
            raise MedaugError("teacher.backend is 'openai' but the environment variable OPENAI_API_KEY is not set "
                              "(export your key; for a local server any non-empty string works)")

    def _complete(self, reqs: list[Request], shas: list[str], report: Report) -> None:
        asyncio.run(self._run(reqs, report))

    async def _run(self, reqs: list[Request], report: Report) -> None:
        client = openai.AsyncOpenAI(api_key=os.environ["OPENAI_API_KEY"],
                                    base_url=os.environ.get("OPENAI_BASE_URL") or None,
                                    timeout=self.tp.timeout_s, max_retries=0,
                                    http_client=openai.DefaultAsyncHttpxClient(verify=ssl_context()))
        sem = asyncio.Semaphore(self.tp.max_concurrency)
        rpm = Pacer(self.tp.rpm) if self.tp.rpm else None
        tpm = Pacer(self.tp.tpm) if self.tp.tpm else None
        rng = random.Random(self.tp.seed)  # jitter only; never affects what is generated

        async def one(j: int) -> None:
            try:
                reserved = self.reserve(reqs[j])
            except BudgetExceeded:
                return report(j, Completion(None, "", False, error="budget"))
            c = await self._request(client, sem, rpm, tpm, rng, reqs[j])
            c.cost_usd = self.meter.settle(reserved, c.input_tokens, c.output_tokens)
            report(j, c)

        async with client:
            await asyncio.gather(*(one(j) for j in range(len(reqs))))

    def _body(self, r: Request) -> dict:
        tp = self.tp
        body = dict(model=tp.model, messages=r.messages, temperature=tp.temperature, top_p=tp.top_p,
                    max_tokens=tp.max_new_tokens, seed=tp.seed + r.sample_index)
        if r.schema is not None and self.structured and tp.response_format != "none":
            body["response_format"] = {"type": "json_object"} if tp.response_format == "json_object" else \
                {"type": "json_schema", "json_schema": {"name": "reply", "schema": r.schema, "strict": True}}
        return body

    async def _request(self, client: openai.AsyncOpenAI, sem: asyncio.Semaphore, rpm: Pacer | None,
                       tpm: Pacer | None, rng: random.Random, r: Request) -> Completion:
        tp = self.tp
        error = "unknown"
        tokens = estimate_tokens(r.text) + tp.max_new_tokens
        for attempt in range(1, tp.max_attempts + 1):
            wait = None
            async with sem:
                if rpm:
                    await rpm.take()
                if tpm:
                    await tpm.take(tokens)
                try:
                    # the raw endpoint (a documented openai-python path): parsing into typed models costs more
                    # CPU than the request itself at high concurrency
                    resp = await client.post("/chat/completions", body=self._body(r), cast_to=httpx2.Response)
                    data = json.loads(resp.content)
                    text = data["choices"][0]["message"]["content"]
                    if not isinstance(text, str):
                        raise TypeError("no message content")
                    usage = data.get("usage") or {}
                    return Completion(text, "", False, int(usage.get("prompt_tokens") or 0),
                                      int(usage.get("completion_tokens") or 0))
                except openai.APIStatusError as e:
                    error = f"http_{e.status_code}"
                    if self.structured and "response_format" in self._body(r) and refuses_response_format(e):
                        self.structured = False  # ask again at once, with the prompt's instructions only
                        continue
                    if e.status_code not in (408, 429) and e.status_code < 500:
                        return Completion(None, "", False, error=error)  # a client error: retrying won't help
                    wait = retry_after_s(e.response.headers)
                except openai.APITimeoutError:
                    error = "timeout"
                except openai.APIConnectionError:
                    error = "connection_error"
                except (ValueError, TypeError, KeyError, IndexError):
                    error = "malformed_response"  # bad JSON body or a reply without choices/content
            if attempt < tp.max_attempts:
                backoff = tp.backoff_s * 2 ** (attempt - 1) * (0.5 + rng.random())
                await asyncio.sleep(min(MAX_WAIT_S, max(backoff, wait or 0.0)))
        return Completion(None, "", False, error=error)
