"""The arithmetic of a token bucket for one provider account, on a state any process can read and write.

The state (:class:`BucketState`) holds the levels, the time of the last refill and a pause, all in
the clock of the place it is stored (wall clock for a file, the database's clock for Postgres), so
every process sharing it agrees. The functions here change a state in place; the stores in
:mod:`ragindex.embedders.shared_limits` and :mod:`ragindex.embedders.shared_limits_pg` call them
inside their lock or transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass
class BucketState:
    """What every process sees: levels (``None``: a new, full bucket), the last refill and a pause (wall clock)."""

    tokens: float | None = None
    requests: float | None = None
    t: float = 0.0
    paused_until: float = 0.0

    @classmethod
    def from_json(cls, text: str) -> BucketState:
        try:
            raw = json.loads(text) if text.strip() else {}
            return cls(**{k: (None if raw.get(k) is None else float(raw[k])) for k in ("tokens", "requests")},
                       t=float(raw.get("t", 0.0)), paused_until=float(raw.get("paused_until", 0.0)))
        except (ValueError, TypeError):  # a torn write (a crash mid-write): start from a full bucket
            return cls()


@dataclass(frozen=True)
class Rates:
    """One process's view of the account's limits, in units per second (``None``: no limit of that kind)."""

    tps: float | None
    rps: float | None
    burst_s: float = 1.0

    def cap_tokens(self, request: int = 0) -> float:
        return max(self.tps * self.burst_s, request) if self.tps else 0.0

    def cap_requests(self) -> float:
        return max(self.rps * self.burst_s, 1.0) if self.rps else 0.0


def refill(st: BucketState, now: float, rates: Rates, request: int = 0) -> None:
    """Top the levels up by the time since the last refill (a clock that went back adds nothing)."""
    dt = max(now - st.t, 0.0) if st.t else 0.0
    st.t = max(now, st.t)
    if rates.tps:
        cap = rates.cap_tokens(request)
        st.tokens = cap if st.tokens is None else min(cap, st.tokens + dt * rates.tps)
    if rates.rps:
        cap = rates.cap_requests()
        st.requests = cap if st.requests is None else min(cap, st.requests + dt * rates.rps)


def take(st: BucketState, now: float, rates: Rates, tokens: int) -> float:
    """Take a request of ``tokens`` tokens now (returns 0), or the seconds to wait before trying again."""
    refill(st, now, rates, tokens)
    delay = max(st.paused_until - now, 0.0)
    if rates.tps and st.tokens < tokens:
        delay = max(delay, (tokens - st.tokens) / rates.tps)
    if rates.rps and st.requests < 1:
        delay = max(delay, (1 - st.requests) / rates.rps)
    if delay <= 0:
        if rates.tps:
            st.tokens -= tokens
        if rates.rps:
            st.requests -= 1
    return delay


def pause(st: BucketState, now: float, seconds: float) -> None:
    st.paused_until = max(st.paused_until, now + seconds)


def tighten(st: BucketState, now: float, rates: Rates, tokens_left: float | None, requests_left: float | None) -> None:
    """What the server says is left caps what the bucket holds (it only ever lowers it)."""
    refill(st, now, rates)
    if tokens_left is not None and rates.tps:
        st.tokens = min(st.tokens, tokens_left)
    if requests_left is not None and rates.rps:
        st.requests = min(st.requests, requests_left)
