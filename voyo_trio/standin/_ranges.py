"""Byte range requests per RFC 9110 section 14, for a single range."""

from __future__ import annotations

import re
from dataclasses import dataclass

_RANGE_SPEC = re.compile(r"([0-9]*)-([0-9]*)")


class RangeNotSatisfiableError(ValueError):
    """Raised when a valid Range header selects no byte of the representation."""


@dataclass(frozen=True)
class ByteRange:
    """Inclusive byte positions ``first..last`` of a representation."""

    first: int
    last: int

    @property
    def length(self) -> int:
        """Number of bytes in the range."""
        return self.last - self.first + 1

    def content_range(self, size: int) -> str:
        """Content-Range header value for a representation of ``size`` bytes."""
        return f"bytes {self.first}-{self.last}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """Parse a Range header against a representation of ``size`` bytes.

    Returns None when the whole representation should be sent: no header, a
    malformed one, another range unit, or several ranges, for which a server
    may send the full representation. Raises RangeNotSatisfiableError
    for a first position at or past the end, or a zero-length suffix.
    """
    spec = _single_byte_range_spec(header)
    if spec is None:
        return None
    match = _RANGE_SPEC.fullmatch(spec)
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        return _suffix_range(last, size)
    return _int_range(int(first), int(last) if last else None, size)


def _single_byte_range_spec(header: str | None) -> str | None:
    if header is None:
        return None
    unit, separator, specs = header.strip().partition("=")
    if not separator or unit.strip().lower() != "bytes" or "," in specs:
        return None
    return specs.strip()


def _suffix_range(suffix: str, size: int) -> ByteRange | None:
    if not suffix:
        return None
    length = int(suffix)
    if length == 0 or size == 0:
        raise RangeNotSatisfiableError(f"suffix range of {length} bytes")
    return ByteRange(first=max(0, size - length), last=size - 1)


def _int_range(first: int, last: int | None, size: int) -> ByteRange | None:
    # RFC 9110 makes a range with last < first invalid, so the header is
    # ignored rather than rejected with 416.
    if last is not None and last < first:
        return None
    if first >= size:
        raise RangeNotSatisfiableError(f"first byte {first} is past size {size}")
    end = size - 1 if last is None else min(last, size - 1)
    return ByteRange(first=first, last=end)
