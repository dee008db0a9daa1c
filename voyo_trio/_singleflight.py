"""Single flight: concurrent calls for one key share one execution.

The shared work runs as a task in a nursery owned by the app, not in the task
of the caller that started it, so cancelling that caller leaves the others
waiting for the same answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import trio

__all__ = ["FlightCancelled", "SingleFlight"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class FlightCancelled(Exception):
    """The shared work was cancelled, which happens when the server shuts down."""


class _Flight(Generic[V]):
    def __init__(self) -> None:
        self.done = trio.Event()
        self.value: V | None = None
        self.error: BaseException | None = None

    async def wait(self) -> V:
        await self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


class SingleFlight(Generic[K, V]):
    """Run at most one ``work()`` per key at a time and share its result."""

    def __init__(self) -> None:
        self._flights: dict[K, _Flight[V]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def __contains__(self, key: object) -> bool:
        return key in self._flights

    async def run(
        self, key: K, work: Callable[[], Awaitable[V]], nursery: trio.Nursery
    ) -> tuple[V, bool]:
        """Return ``work()``'s result and whether this call started it.

        ``work`` starts in ``nursery`` unless a flight for ``key`` is running,
        in which case this call waits for that flight instead.
        """
        flight = self._flights.get(key)
        leader = flight is None
        if flight is None:
            flight = self._flights[key] = _Flight()
            nursery.start_soon(self._execute, key, flight, work)
        return await flight.wait(), leader

    async def _execute(
        self, key: K, flight: _Flight[V], work: Callable[[], Awaitable[V]]
    ) -> None:
        try:
            flight.value = await work()
        except trio.Cancelled:
            flight.error = FlightCancelled(f"work for {key!r} was cancelled")
            raise
        except Exception as error:
            # The error reaches every waiter; none of it escapes into the nursery.
            flight.error = error
        finally:
            del self._flights[key]
            flight.done.set()
