"""A TTL cache with least-recently-used eviction, bounded by entries and bytes.

Every operation is O(1): entries live in an ``OrderedDict`` in use order, so
eviction pops from the front without sorting. Expired entries are dropped
lazily when read and by :meth:`TTLCache.sweep`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["CacheStats", "TTLCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    expirations: int = 0

    @property
    def hit_rate(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


@dataclass
class _Entry(Generic[V]):
    value: V
    deadline: float
    size_bytes: int


class TTLCache(Generic[K, V]):
    """Map keys to values that expire ``ttl_s`` seconds after they are set.

    ``max_bytes`` bounds the sum of the sizes passed to :meth:`set`; a value
    larger than the whole budget is not stored. ``clock`` returns monotonic
    seconds and may be replaced in tests.
    """

    def __init__(
        self,
        *,
        max_entries: int,
        default_ttl_s: float,
        max_bytes: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.default_ttl_s = default_ttl_s
        self.stats = CacheStats()
        self._clock = clock
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()
        self._total_bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def total_bytes(self) -> int:
        return self._total_bytes

    def get(self, key: K) -> V | None:
        """Return the live value for ``key`` and mark it recently used."""
        entry = self._entries.get(key)
        if entry is not None and entry.deadline <= self._clock():
            self._remove(key)
            self.stats.expirations += 1
            entry = None
        if entry is None:
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return entry.value

    def set(
        self, key: K, value: V, *, ttl_s: float | None = None, size_bytes: int = 0
    ) -> None:
        """Store ``value``, evicting least recently used entries to fit."""
        ttl_s = self.default_ttl_s if ttl_s is None else min(ttl_s, self.default_ttl_s)
        self.discard(key)
        if ttl_s <= 0 or (self.max_bytes is not None and size_bytes > self.max_bytes):
            return
        self._entries[key] = _Entry(value, self._clock() + ttl_s, size_bytes)
        self._total_bytes += size_bytes
        self._evict_to_fit()

    def discard(self, key: K) -> None:
        """Remove ``key`` if present."""
        if key in self._entries:
            self._remove(key)

    def sweep(self) -> int:
        """Drop every expired entry and return how many were dropped."""
        now = self._clock()
        # Collect first: the dict must not change while it is iterated.
        expired = [key for key, entry in self._entries.items() if entry.deadline <= now]
        for key in expired:
            self._remove(key)
        self.stats.expirations += len(expired)
        return len(expired)

    def _remove(self, key: K) -> None:
        entry = self._entries.pop(key)
        self._total_bytes -= entry.size_bytes

    def _evict_to_fit(self) -> None:
        while len(self._entries) > self.max_entries or self._over_budget():
            oldest = next(iter(self._entries))
            self._remove(oldest)
            self.stats.evictions += 1

    def _over_budget(self) -> bool:
        return self.max_bytes is not None and self._total_bytes > self.max_bytes
