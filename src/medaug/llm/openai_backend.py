"""Teacher backend for any OpenAI-compatible chat endpoint (OpenAI, Azure, vLLM, Ollama, TGI, llama.cpp).

URL and key come from the environment (OPENAI_BASE_URL, OPENAI_API_KEY), never from params, and the key is
never logged. `max_concurrency` requests in flight; retries on 408/429/5xx/timeouts/connection errors/malformed
responses with exponential backoff + jitter, honouring Retry-After; at most `max_attempts` attempts in all.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import time

import openai

from medaug.errors import MedaugError
from medaug.llm.teacher import Completion, Report, Teacher

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


class OpenAITeacher(Teacher):
    backend = "openai"

    def _prepare(self) -> None:
        if not os.environ.get("OPENAI_API_KEY"):
            raise MedaugError("teacher.backend is 'openai' but the environment variable OPENAI_API_KEY is not set "
                              "(export your key; for a local server any non-empty string works)")

    def _complete(self, prompts: list[str], sample_index: int, report: Report) -> None:
        asyncio.run(self._run(prompts, sample_index, report))

    async def _run(self, prompts: list[str], sample_index: int, report: Report) -> None:
        client = openai.AsyncOpenAI(api_key=os.environ["OPENAI_API_KEY"],
                                    base_url=os.environ.get("OPENAI_BASE_URL") or None,
                                    timeout=self.tp.timeout_s, max_retries=0)
        sem = asyncio.Semaphore(self.tp.max_concurrency)
        rng = random.Random(self.tp.seed)  # jitter only; never affects what is generated

        async def one(j: int) -> None:
            report(j, await self._request(client, sem, rng, prompts[j], self.tp.seed + sample_index))

        async with client:
            await asyncio.gather(*(one(j) for j in range(len(prompts))))

    async def _request(self, client: openai.AsyncOpenAI, sem: asyncio.Semaphore, rng: random.Random,
                       prompt: str, seed: int) -> Completion:
        tp = self.tp
        error = "unknown"
        for attempt in range(1, tp.max_attempts + 1):
            wait = None
            async with sem:
                try:
                    resp = await client.chat.completions.create(
                        model=tp.model, messages=[{"role": "user", "content": prompt}],
                        temperature=tp.temperature, top_p=tp.top_p, max_tokens=tp.max_new_tokens, seed=seed)
                    text = resp.choices[0].message.content
                    if not isinstance(text, str):
                        raise TypeError("no message content")
                    usage = resp.usage
                    return Completion(text, "", False, getattr(usage, "prompt_tokens", 0) or 0,
                                      getattr(usage, "completion_tokens", 0) or 0)
                except openai.APIStatusError as e:
                    error = f"http_{e.status_code}"
                    if e.status_code not in (408, 429) and e.status_code < 500:
                        return Completion(None, "", False, error=error)  # a client error: retrying won't help
                    wait = retry_after_s(e.response.headers)
                except openai.APITimeoutError:
                    error = "timeout"
                except openai.APIConnectionError:
                    error = "connection_error"
                except (ValueError, TypeError, AttributeError, IndexError, openai.APIResponseValidationError):
                    error = "malformed_response"  # bad JSON body or a reply without choices/content
            if attempt < tp.max_attempts:
                backoff = tp.backoff_s * 2 ** (attempt - 1) * (0.5 + rng.random())
                await asyncio.sleep(min(MAX_WAIT_S, max(backoff, wait or 0.0)))
        return Completion(None, "", False, error=error)
