"""Serving stored files with byte ranges, as RFC 9110 section 14 defines them.

Reads go through Trio's async file API in bounded chunks, so a large file
never blocks the event loop or sits whole in memory.
"""

from __future__ import annotations

import datetime
import email.utils
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

__all__ = [
    "ByteRange",
    "FileBody",
    "RangeNotSatisfiable",
    "if_range_allows",
    "parse_byte_range",
]

_CHUNK_BYTES = 64 * 1024
# Positions past 10**18 bytes are no file's; longer numbers are ignored.
# RFC 9110 section 14.1: the range unit is case-insensitive.
_SINGLE_RANGE = re.compile(r"bytes=(\d{0,18})-(\d{0,18})", re.IGNORECASE)


class RangeNotSatisfiable(Exception):
    """Every range in the request starts past the end of the file."""


@dataclass(frozen=True)
class ByteRange:
    """Inclusive first and last byte positions."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.first}-{self.last}/{size}"


def parse_byte_range(header: str | None, size: int) -> ByteRange | None:
    """Return the range to serve, or None to serve the whole file.

    A header that does not parse, or asks for several ranges, is ignored, as
    RFC 9110 section 14.2 allows. A last position past the end is clamped; a
    suffix longer than the file means the whole file. Raises
    RangeNotSatisfiable when the range starts at or past the end.
    """
    if header is None:
        return None
    match = _SINGLE_RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first_text, last_text = match.groups()
    if first_text == "":
        return _suffix_range(last_text, size)
    return _int_range(int(first_text), last_text, size)


def _suffix_range(length_text: str, size: int) -> ByteRange | None:
    if length_text == "":
        return None
    length = int(length_text)
    if length == 0 or size == 0:
        raise RangeNotSatisfiable
    return ByteRange(max(size - length, 0), size - 1)


def _int_range(first: int, last_text: str, size: int) -> ByteRange | None:
    if first >= size:
        raise RangeNotSatisfiable
    last = size - 1 if last_text == "" else int(last_text)
    if last < first:
        return None
    return ByteRange(first, min(last, size - 1))


def if_range_allows(if_range: str | None, etag: str, last_modified: str) -> bool:
    """Apply ``If-Range``: ranges are served only if the validator matches.

    An entity tag must match strongly; a date must equal ``Last-Modified``.
    """
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        return value == etag
    date = _parse_http_date(value)
    return date is not None and date == _parse_http_date(last_modified)


def _parse_http_date(value: str) -> datetime.datetime | None:
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


class FileBody:
    """Async iterator over ``length`` bytes of an open file from ``offset``.

    The file is opened before the response starts, so deleting the track
    while it plays does not cut the body short.
    """

    def __init__(self, file: Any, path: Path, offset: int, length: int) -> None:
        self._path = path
        self._offset = offset
        self._remaining = length
        self._file: Any = file
        self._positioned = False

    def __aiter__(self) -> FileBody:
        return self

    async def __anext__(self) -> bytes:
        if self._remaining <= 0:
            await self.aclose()
            raise StopAsyncIteration
        if self._file is None:
            raise StopAsyncIteration
        if not self._positioned:
            await self._file.seek(self._offset)
            self._positioned = True
        chunk = await self._file.read(min(_CHUNK_BYTES, self._remaining))
        if not chunk:
            # The file shrank under us: end short rather than pad.
            raise OSError(f"{self._path.name} ended {self._remaining} bytes early")
        self._remaining -= len(chunk)
        return bytes(chunk)

    async def aclose(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            with trio.CancelScope(shield=True):
                await file.aclose()

    def close(self) -> None:
        """Close the file at once; for a request that ends before its body."""
        if self._file is not None:
            file, self._file = self._file, None
            file.wrapped.close()
