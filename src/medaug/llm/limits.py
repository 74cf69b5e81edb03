"""What a teacher run may spend: request/token rates (RPM/TPM) and money (a budget in USD).

Rates are paced with what is known before a request is sent: the prompt's estimated tokens and the reply's
worst case (max_new_tokens), which is how providers count rate limits. The budget is a promise: a request is
started only when its worst case (an upper bound of its prompt tokens plus max_new_tokens) fits in what is left
after what was spent and what the requests in flight could still cost; every reply settles at the tokens its
`usage` reports.
"""

from __future__ import annotations

import asyncio
import threading
import time

CHARS_PER_TOKEN = 4  # estimate of prompt tokens before the endpoint counts them (English, BPE tokenizers)
TOKENS_PER_MESSAGE = 8  # chat-template tokens around each message (role markers, separators): OpenAI adds 3-4


def estimate_tokens(text: str) -> int:
    """A typical count (for rate pacing and when a reply has no usage), not a bound: 4 chars a token."""
    return len(text) // CHARS_PER_TOKEN + 1


def max_prompt_tokens(text: str, messages: int = 1) -> int:
    """An upper bound of the prompt's tokens: a byte-level BPE or byte-fallback tokenizer (GPT, Llama, Gemma,
    Qwen) never makes more tokens than the text has UTF-8 bytes, plus the chat template's tokens per message.
    chars/4 is no bound: digits, non-English text and code take more tokens than that."""
    return len(text.encode("utf-8", "surrogatepass")) + TOKENS_PER_MESSAGE * (messages + 1)


class Pacer:
    """At most `per_minute` units a minute, paced evenly: a request of n units takes the next free slot and
    holds the line for n / rate seconds. In any window of T seconds at most rate x T plus one request's units
    pass, so a limit a provider enforces per second (as they do) holds too; a run never bursts a minute's
    quota. Slots are handed out in call order on one event loop, so no lock is needed."""

    def __init__(self, per_minute: float):
        self.seconds_per_unit = 60.0 / per_minute
        self.next_slot = time.monotonic()

    async def take(self, n: float = 1.0) -> None:
        now = time.monotonic()
        slot = max(now, self.next_slot)
        self.next_slot = slot + n * self.seconds_per_unit
        if slot > now:
            await asyncio.sleep(slot - now)


class BudgetExceeded(Exception):
    pass


class Meter:
    """Spend of one stage, across all its teachers: settled cost of answered requests plus a worst-case
    reservation for the requests in flight (only those: a queued request reserves nothing until it is sent).
    `reserve` refuses a request that could take spend past the budget; from then on, the stage sends nothing."""

    def __init__(self, budget_usd: float = 0.0):
        self.budget = budget_usd
        self.spent = self.reserved = 0.0
        self.refused = 0
        self._lock = threading.Lock()

    def reserve(self, cost: float) -> None:
        with self._lock:
            if self.refused or (self.budget and self.spent + self.reserved + cost > self.budget):
                self.refused += 1
                raise BudgetExceeded
            self.reserved += cost

    def settle(self, reserved: float, cost: float) -> float:
        """Replace a reservation by what the attempt cost (0 for one the provider does not bill); returns it."""
        with self._lock:
            self.reserved -= reserved
            self.spent += cost
        return cost
