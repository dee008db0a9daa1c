"""Run yt-dlp calls in worker threads, and count the threads still running.

A thread cannot be cancelled. When the Trio task waiting on one is cancelled
(a deadline, a client gone, shutdown), the thread is abandoned and keeps
running until yt-dlp returns. The counts here are process-wide, because such
a thread can outlive the app that started it, and ``/health`` shows them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, TypeVarTuple

import trio

__all__ = ["ThreadCounts", "run_in_worker", "thread_counts"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_lock = threading.Lock()
_running = 0
_abandoned = 0


@dataclass(frozen=True)
class ThreadCounts:
    """Counts of running worker threads, of which ``abandoned`` have no caller."""

    running: int
    abandoned: int


def thread_counts() -> ThreadCounts:
    """Return how many worker threads are running in this process."""
    with _lock:
        return ThreadCounts(running=_running, abandoned=_abandoned)


class _Call:
    # The flags change under _lock only.
    __slots__ = ("abandoned", "finished", "started")

    def __init__(self) -> None:
        self.started = False
        self.finished = False
        self.abandoned = False


async def run_in_worker(
    fn: Callable[[*Ts], T],
    *args: *Ts,
    limiter: trio.CapacityLimiter,
) -> T:
    """Run ``fn(*args)`` in a worker thread. Cancelling the caller abandons it."""
    global _abandoned
    call = _Call()

    def counted() -> T:
        global _running, _abandoned
        with _lock:
            call.started = True
            _running += 1
            # The caller may have given up before the thread got to run.
            if call.abandoned:
                _abandoned += 1
        try:
            return fn(*args)
        finally:
            with _lock:
                call.finished = True
                _running -= 1
                if call.abandoned:
                    _abandoned -= 1

    try:
        return await trio.to_thread.run_sync(
            counted, limiter=limiter, abandon_on_cancel=True
        )
    except trio.Cancelled:
        with _lock:
            call.abandoned = True
            if call.started and not call.finished:
                _abandoned += 1
        raise
