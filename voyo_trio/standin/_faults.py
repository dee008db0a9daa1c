"""Faults that the stand-in's media host injects into matching requests."""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# The size of each piece of a paced body.
PACE_PIECE_BYTES = 1024


@dataclass
class Fault:
    """Misbehaviour applied to the next media requests for one track.

    The steps run in this order: sleep ``delay_s``, then reset the
    connection if ``reset_before_headers``, else respond with ``status`` instead
    of the media if set. Whatever response follows, its body is cut after
    ``reset_after_bytes`` (connection reset) or ``stall_after_bytes``
    (connection kept open with nothing more sent). A body shorter than the
    limit is sent whole before the reset or stall. ``pace_bytes_per_s`` sends
    the body in pieces of ``PACE_PIECE_BYTES`` at that rate, as a throttled
    host does. ``times`` counts the
    requests the fault applies to before it clears itself, and None means
    until it is cleared.
    """

    delay_s: float = 0.0
    status: int | None = None
    # Sent as the Location header of the ``status`` response, for redirects.
    location: str | None = None
    reset_before_headers: bool = False
    reset_after_bytes: int | None = None
    stall_after_bytes: int | None = None
    pace_bytes_per_s: float | None = None
    times: int | None = None

    def __post_init__(self) -> None:
        _check_not_negative("delay_s", self.delay_s)
        _check_not_negative("reset_after_bytes", self.reset_after_bytes)
        _check_not_negative("stall_after_bytes", self.stall_after_bytes)
        _check_not_negative("times", self.times)
        if self.pace_bytes_per_s is not None and self.pace_bytes_per_s <= 0:
            raise ValueError(
                f"Fault.pace_bytes_per_s must be > 0, got {self.pace_bytes_per_s!r}"
            )
        _check_status(self.status)
        _check_single_body_fault(self)


def _check_not_negative(name: str, value: float | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"Fault.{name} must be >= 0, got {value!r}")


def _check_status(status: int | None) -> None:
    # h11 sends only final responses for a request, so 1xx is not allowed.
    if status is not None and not 200 <= status <= 599:
        raise ValueError(f"Fault.status must be in 200..599, got {status!r}")


def _check_single_body_fault(fault: Fault) -> None:
    if fault.reset_after_bytes is not None and fault.stall_after_bytes is not None:
        raise ValueError(
            "Fault.reset_after_bytes and Fault.stall_after_bytes are exclusive, "
            f"got {fault.reset_after_bytes!r} and {fault.stall_after_bytes!r}"
        )


class FaultTable:
    """Current fault per video id, with the remaining count of limited faults."""

    def __init__(self) -> None:
        self._faults: dict[str, Fault] = {}
        self._remaining: dict[str, int] = {}

    def set(self, video_id: str, fault: Fault | None) -> None:
        """Install a fault for a video id, or clear it when fault is None."""
        self._faults.pop(video_id, None)
        self._remaining.pop(video_id, None)
        if fault is None or fault.times == 0:
            return
        self._faults[video_id] = fault
        if fault.times is not None:
            self._remaining[video_id] = fault.times

    def take(self, video_id: str) -> Fault | None:
        """Return the fault for one request and count it against ``times``."""
        fault = self._faults.get(video_id)
        if fault is not None and fault.times is not None:
            self._count_use(video_id)
        return fault

    def _count_use(self, video_id: str) -> None:
        remaining = self._remaining[video_id] - 1
        self._remaining[video_id] = remaining
        if remaining == 0:
            logger.debug("fault for %s used up, clearing it", video_id)
            self.set(video_id, None)
