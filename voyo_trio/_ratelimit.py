"""Token-bucket rate limits per client and for extractions across all clients.

:class:`RateLimiter` keeps three budgets, each a count per ``window_s``:

* ``requests``: every request of one client (:meth:`RateLimiter.check_request`);
* ``extractions``: yt-dlp runs started for one client
  (:meth:`RateLimiter.check_extraction`, called on a cache miss only);
* ``global_extractions``: yt-dlp runs started for all clients together.

Buckets start full and refill continuously, so a client may spend a budget of
``N`` at once and then gets one more token every ``window_s / N`` seconds.
A check is O(1). The per-client table is an ``OrderedDict`` in order of last
use, bounded by ``max_clients``: a new client evicts the least recently seen
one. Checks never await, so under Trio each check and its token update run
without interruption.
"""

from __future__ import annotations

import logging
import math
import operator
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ._errors import RateLimited

__all__ = [
    "REASONS",
    "RateLimitSettings",
    "RateLimitState",
    "RateLimiter",
    "TokenBucket",
]

logger = logging.getLogger(__name__)

REQUESTS = "requests"
EXTRACTIONS = "extractions"
GLOBAL_EXTRACTIONS = "global_extractions"
# Values of ``RateLimited.reason``, one per budget.
REASONS = (REQUESTS, EXTRACTIONS, GLOBAL_EXTRACTIONS)

_NS_PER_S = 1_000_000_000
# The share of the global extraction budget that server-started extractions
# leave for clients.
_SERVER_RESERVE = 0.5


@dataclass(frozen=True)
class RateLimitSettings:
    """Limits of a :class:`RateLimiter`. A budget of 0 turns that budget off."""

    enabled: bool = True
    requests_per_window: int = 60
    extractions_per_window: int = 10
    global_extractions_per_window: int = 300
    window_s: float = 60.0
    max_clients: int = 10_000

    def __post_init__(self) -> None:
        if not math.isfinite(self.window_s) or not self.window_s > 0:
            raise ValueError(
                f"invalid window_s={self.window_s!r}: expected a finite number > 0"
            )
        # A token bucket refills at most one token per nanosecond.
        max_budget = _to_ns(self.window_s)
        budgets = {
            "requests_per_window": self.requests_per_window,
            "extractions_per_window": self.extractions_per_window,
            "global_extractions_per_window": self.global_extractions_per_window,
        }
        for name, value in budgets.items():
            if not isinstance(value, int) or not 0 <= value <= max_budget:
                raise ValueError(
                    f"invalid {name}={value!r}: expected an integer "
                    f"from 0 to {max_budget}"
                )
        if self.max_clients < 1:
            raise ValueError(f"invalid max_clients={self.max_clients!r}: expected >= 1")


@dataclass(frozen=True)
class RateLimitState:
    """Snapshot of a :class:`RateLimiter` for a health endpoint."""

    enabled: bool
    clients: int
    max_clients: int
    window_s: float
    requests_per_window: int
    extractions_per_window: int
    global_extractions_per_window: int
    # Whole tokens left in the global extraction budget, or None when it is off.
    global_extractions_available: int | None
    # Rejected checks since start, keyed by ``RateLimited.reason``.
    rejections: Mapping[str, int]
    # Clients dropped from the full table to make room for a new one.
    evictions: int
    # Idle clients dropped by :meth:`RateLimiter.sweep`.
    swept: int


class TokenBucket:
    """A budget of ``capacity`` tokens that refills by ``capacity / window_s`` a second.

    The bucket starts full at time ``now``. Every method takes the current
    monotonic time in seconds, so one clock reading serves several buckets.

    The only state is the time at which the bucket is full again, in integer
    nanoseconds, as in the generic cell rate algorithm (GCRA). Integer time
    lets a burst of exactly ``capacity`` pass and keeps waits such as 6.0 s
    exact, where a float token count would drift by rounding.
    """

    __slots__ = ("_full_at_ns", "_interval_ns", "_window_ns", "capacity", "window_s")

    def __init__(self, capacity: int, window_s: float, now: float) -> None:
        self._interval_ns = _refill_interval_ns(capacity, window_s)
        # A whole number of intervals, at most ``capacity`` ns short of window_s.
        self._window_ns = self._interval_ns * capacity
        self._full_at_ns = _to_ns(now)
        self.capacity = capacity
        self.window_s = window_s

    def tokens(self, now: float) -> float:
        """Return the tokens in the bucket at ``now``, a partial token as a fraction."""
        deficit_ns = max(0, self._full_at_ns - _to_ns(now))
        return max(0.0, self.capacity - deficit_ns / self._interval_ns)

    def wait_s(self, now: float) -> float:
        """Return the seconds until one token is available, 0.0 if one is now."""
        return self._wait_ns(_to_ns(now)) / _NS_PER_S

    def take(self, now: float) -> float:
        """Take one token and return 0.0, or return :meth:`wait_s` if there is none."""
        now_ns = _to_ns(now)
        wait_ns = self._wait_ns(now_ns)
        if wait_ns == 0:
            self._full_at_ns = max(self._full_at_ns, now_ns) + self._interval_ns
        return wait_ns / _NS_PER_S

    def is_full(self, now: float) -> bool:
        return self._full_at_ns <= _to_ns(now)

    def _wait_ns(self, now_ns: int) -> int:
        # A token is free while the bucket lacks at most capacity - 1 of them.
        deficit_ns = max(0, self._full_at_ns - now_ns)
        return max(0, deficit_ns + self._interval_ns - self._window_ns)


def _to_ns(seconds: float) -> int:
    return round(seconds * _NS_PER_S)


def _refill_interval_ns(capacity: int, window_s: float) -> int:
    """Return the nanoseconds that one token takes to refill.

    Raises:
        ValueError: if ``window_s`` is not a finite number > 0, or ``capacity``
            is below 1 or above one token per nanosecond of the window.
    """
    capacity = operator.index(capacity)
    if not math.isfinite(window_s) or not window_s > 0:
        raise ValueError(f"invalid window_s={window_s!r}: expected a finite number > 0")
    if capacity < 1 or capacity > _to_ns(window_s):
        raise ValueError(
            f"invalid capacity={capacity!r} for window_s={window_s!r}: expected "
            "from 1 to one token per nanosecond of the window"
        )
    return _to_ns(window_s) // capacity


class _ClientBudgets:
    """Buckets of one client. A bucket is None when its budget is off."""

    __slots__ = ("extractions", "requests")

    def __init__(
        self, requests: TokenBucket | None, extractions: TokenBucket | None
    ) -> None:
        self.requests = requests
        self.extractions = extractions

    def is_full(self, now: float) -> bool:
        return all(
            bucket.is_full(now)
            for bucket in (self.requests, self.extractions)
            if bucket is not None
        )


class RateLimiter:
    """Per-client and global rate limit budgets.

    :meth:`check_request` and :meth:`check_extraction` raise
    :class:`RateLimited` when a budget is spent. ``client`` is any stable key
    for the caller, normally the address returned by
    :func:`voyo_trio._clientip.client_address`. ``clock`` returns monotonic
    seconds and may be replaced in tests.
    """

    def __init__(
        self,
        settings: RateLimitSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = RateLimitSettings() if settings is None else settings
        self._clock = clock
        self._clients: OrderedDict[str, _ClientBudgets] = OrderedDict()
        self._global_extractions = self._new_bucket(
            self.settings.global_extractions_per_window, clock()
        )
        self._rejections = dict.fromkeys(REASONS, 0)
        self._evictions = 0
        self._swept = 0

    def __len__(self) -> int:
        return len(self._clients)

    def __contains__(self, client: object) -> bool:
        return client in self._clients

    def check_request(self, client: str) -> None:
        """Take one token from ``client``'s request budget.

        Raises:
            RateLimited: with reason ``"requests"`` when the budget is spent.
        """
        if not self.settings.enabled or not self.settings.requests_per_window:
            return
        now = self._clock()
        bucket = self._budgets(client, now).requests
        wait = 0.0 if bucket is None else bucket.take(now)
        if wait:
            raise self._rejected(client, REQUESTS, wait)

    def check_extraction(self, client: str) -> None:
        """Take one token from ``client``'s and from the global extraction budget.

        Call this only when an extraction really runs, after a cache miss. No
        token is taken unless both budgets have one. When both are spent, the
        error names the one that refills later, so that a retry after
        ``retry_after_s`` finds both refilled unless other clients spend the
        global budget meanwhile.

        Raises:
            RateLimited: with reason ``"extractions"`` or ``"global_extractions"``.
        """
        if not self.settings.enabled:
            return
        now = self._clock()
        own = self._client_extraction_bucket(client, now)
        shared = self._global_extractions
        own_wait = 0.0 if own is None else own.wait_s(now)
        shared_wait = 0.0 if shared is None else shared.wait_s(now)
        if own_wait or shared_wait:
            if own_wait >= shared_wait:
                raise self._rejected(client, EXTRACTIONS, own_wait)
            raise self._rejected(client, GLOBAL_EXTRACTIONS, shared_wait)
        for bucket in (own, shared):
            if bucket is not None:
                bucket.take(now)

    def take_global_extraction(self) -> bool:
        """Take one token from the global extraction budget, if enough is left.

        For extractions that the server starts itself, such as boost
        downloads, which no client's budget pays for. Returns False, taking
        nothing, when taking would leave less than half of the budget.
        """
        shared = self._global_extractions
        if not self.settings.enabled or shared is None:
            return True
        now = self._clock()
        # Keep part of the budget for clients, so that the server's own
        # extractions never leave a playback without one.
        if shared.tokens(now) - 1 < shared.capacity * _SERVER_RESERVE:
            return False
        shared.take(now)
        return True

    def sweep(self) -> int:
        """Drop clients whose buckets have all refilled and return how many.

        A client idle for one whole window is always dropped. Dropping it loses
        nothing because a new entry starts full too. This is O(clients), so
        call it on a timer, for example once a window.
        """
        now = self._clock()
        # Collect first: the dict must not change while it is iterated.
        idle = [key for key, budgets in self._clients.items() if budgets.is_full(now)]
        for key in idle:
            del self._clients[key]
        self._swept += len(idle)
        return len(idle)

    def state(self) -> RateLimitState:
        """Return a snapshot of the limits and counters, for ``dataclasses.asdict``."""
        settings = self.settings
        shared = self._global_extractions
        available = None if shared is None else int(shared.tokens(self._clock()))
        return RateLimitState(
            enabled=settings.enabled,
            clients=len(self._clients),
            max_clients=settings.max_clients,
            window_s=settings.window_s,
            requests_per_window=settings.requests_per_window,
            extractions_per_window=settings.extractions_per_window,
            global_extractions_per_window=settings.global_extractions_per_window,
            global_extractions_available=available,
            rejections=dict(self._rejections),
            evictions=self._evictions,
            swept=self._swept,
        )

    def _client_extraction_bucket(self, client: str, now: float) -> TokenBucket | None:
        if not self.settings.extractions_per_window:
            return None
        return self._budgets(client, now).extractions

    def _budgets(self, client: str, now: float) -> _ClientBudgets:
        """Return ``client``'s buckets, marked most recently seen."""
        budgets = self._clients.get(client)
        if budgets is not None:
            self._clients.move_to_end(client)
            return budgets
        if len(self._clients) >= self.settings.max_clients:
            self._clients.popitem(last=False)
            self._evictions += 1
        budgets = _ClientBudgets(
            self._new_bucket(self.settings.requests_per_window, now),
            self._new_bucket(self.settings.extractions_per_window, now),
        )
        self._clients[client] = budgets
        return budgets

    def _new_bucket(self, capacity: int, now: float) -> TokenBucket | None:
        if not capacity:
            return None
        return TokenBucket(capacity, self.settings.window_s, now)

    def _rejected(self, client: str, reason: str, wait_s: float) -> RateLimited:
        self._rejections[reason] += 1
        message = _limit_message(self.settings, reason, wait_s)
        logger.debug(
            "rate_limit.rejected client=%s reason=%s retry_after_s=%.3f",
            client,
            reason,
            wait_s,
        )
        return RateLimited(message, retry_after_s=wait_s, reason=reason)


def _limit_message(settings: RateLimitSettings, reason: str, wait_s: float) -> str:
    """Return e.g. "rate limit of 60 requests per 60 s per client exceeded: ..."."""
    window = f"{settings.window_s:g} s"
    retry = f"retry in {math.ceil(wait_s)} s"
    if reason == REQUESTS:
        limit = f"{settings.requests_per_window} requests per {window} per client"
    elif reason == EXTRACTIONS:
        limit = f"{settings.extractions_per_window} extractions per {window} per client"
    else:
        count = settings.global_extractions_per_window
        limit = f"{count} extractions per {window} for all clients"
    return f"rate limit of {limit} exceeded: {retry}"
