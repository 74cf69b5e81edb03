"""What a teacher run may spend: request/token rates (RPM/TPM) and money (a budget in USD).

Both are checked before a request is sent, with what is known then: the prompt's estimated tokens and the
reply's worst case (max_new_tokens). That is how providers count rate limits, and it makes the budget a
promise: the run stops before a request that could take it over.
"""

from __future__ import annotations

import asyncio
import threading
import time

from medaug.params import Price

CHARS_PER_TOKEN = 4  # estimate of prompt tokens before the endpoint counts them (English, BPE tokenizers)


def estimate_tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + 1


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
    """Spend of one teacher run: settled cost of answered requests plus a worst-case reservation for those in
    flight. `reserve` refuses a request that could take spend past the budget; from then on, the run is over."""

    def __init__(self, price: Price, budget_usd: float = 0.0):
        self.price, self.budget = price, budget_usd
        self.spent = self.reserved = 0.0
        self.refused = 0
        self._lock = threading.Lock()

    def worst_case(self, input_tokens: int, max_output_tokens: int) -> float:
        return self.price.cost(input_tokens, max_output_tokens)

    def reserve(self, cost: float) -> None:
        with self._lock:
            if self.refused or (self.budget and self.spent + self.reserved + cost > self.budget):
                self.refused += 1
                raise BudgetExceeded
            self.reserved += cost

    def settle(self, reserved: float, input_tokens: int, output_tokens: int) -> float:
        """Replace a reservation by the real cost from the response's usage; returns that cost."""
        cost = self.price.cost(input_tokens, output_tokens)
        with self._lock:
            self.reserved -= reserved
            self.spent += cost
        return cost
