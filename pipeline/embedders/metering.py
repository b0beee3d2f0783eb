"""What one job may send to a paid embedding API, and what it has sent: :class:`Meter`.

Every attempt of every request goes through a meter, from the thread that sends it:

* before it is sent, :meth:`Meter.reserve` counts its tokens against the job's cap (the
  run's budget): what the API billed, what it may have billed, and what is in flight.
  An attempt that would go over the cap is not sent (``BudgetExceeded``), so a budget
  bounds everything sent, retries included;
* an answer that arrived settles it with the tokens the API says it billed;
* an attempt whose answer was lost (a timeout, a connection dropped after sending, a
  5xx from a gateway that may have forwarded it) is *possibly billed*: the meter hands
  it, with its tokens and request id, to ``on_lost`` (which writes it to the ledger)
  before the attempt is retried, so the ledger never falls below the provider's count;
* an attempt the API refused (a 4xx, a 429) was not billed and is released.
"""

from __future__ import annotations

import threading
from typing import Callable

from ragindex.errors import BudgetExceeded


class Meter:
    """The cap and the running counts of one job (a run, a search's probe); safe to share between threads."""

    def __init__(self, cap: int | None = None, on_lost: Callable[[int, str], None] | None = None,
                 refuse: Callable[[str], BaseException] | None = None) -> None:
        self.cap = cap  # tokens billed + possibly billed + in flight may not exceed it (None: no cap)
        self.on_lost = on_lost  # (tokens, request id) -> None, durable when it returns
        self.refuse = refuse or (lambda reason: BudgetExceeded(None, [reason]))
        self.billed = 0  # tokens the API said it billed
        self.possibly = 0  # tokens of attempts whose answer was lost
        self.lost = 0  # such attempts
        self.answers = 0  # attempts answered
        self.in_flight = 0
        self._lock = threading.Lock()

    @property
    def spent(self) -> int:
        """Tokens billed or possibly billed so far."""
        return self.billed + self.possibly

    def reserve(self, tokens: int) -> None:
        """Count an attempt of ``tokens`` tokens before it is sent; refused (nothing sent) over the cap."""
        with self._lock:
            total = self.spent + self.in_flight + tokens
            if self.cap is not None and total > self.cap:
                raise self.refuse(
                    f"sending {tokens:,} more tokens would take this run to {total:,} > its budget of {self.cap:,} tokens "
                    f"({self.billed:,} billed, {self.possibly:,} possibly billed by {self.lost} request(s) whose answer "
                    "was lost, counted as billed); what was embedded is saved and the next run sends only the rest")
            self.in_flight += tokens

    def answered(self, tokens: int, billed: int) -> None:
        with self._lock:
            self.in_flight -= tokens
            self.billed += billed
            self.answers += 1

    def refused(self, tokens: int) -> None:
        with self._lock:
            self.in_flight -= tokens

    def lost_answer(self, tokens: int, request_id: str) -> None:
        """An attempt whose answer was lost: recorded as possibly billed (``on_lost``) before anything else."""
        if self.on_lost is not None:
            self.on_lost(tokens, request_id)
        with self._lock:
            self.in_flight -= tokens
            self.possibly += tokens
            self.lost += 1
