"""YouTube video ids and the VOYO ids that the web player uses for them.

A VOYO id is ``vyo_`` followed by the unpadded base64url encoding of the
YouTube id's UTF-8 bytes, so ``dQw4w9WgXcQ`` becomes ``vyo_ZFF3NHc5V2dYY1E``.
"""

from __future__ import annotations

import base64
import binascii
import re

from ._errors import InvalidInput

__all__ = [
    "VOYO_PREFIX",
    "decode_voyo_id",
    "encode_voyo_id",
    "parse_track_ref",
    "parse_video_id",
]

VOYO_PREFIX = "vyo_"
_VIDEO_ID = re.compile(r"[A-Za-z0-9_-]{11}")
# Eleven id bytes encode to fifteen base64url characters without padding.
_VOYO_BODY = re.compile(r"[A-Za-z0-9_-]{15}")


def parse_video_id(raw: str | None, *, name: str = "v") -> str:
    """Return ``raw`` if it is a valid YouTube id, else raise InvalidInput."""
    if raw is None or raw == "":
        raise InvalidInput(f"missing parameter {name!r}: expected a YouTube video id")
    if not _VIDEO_ID.fullmatch(raw):
        raise InvalidInput(
            f"invalid {name!r}: expected 11 characters from A-Z, a-z, 0-9, '_' and '-'"
        )
    return raw


def encode_voyo_id(video_id: str) -> str:
    """Encode a valid YouTube id as a VOYO id."""
    video_id = parse_video_id(video_id)
    body = base64.urlsafe_b64encode(video_id.encode("utf-8")).rstrip(b"=")
    return VOYO_PREFIX + body.decode("ascii")


def decode_voyo_id(voyo_id: str) -> str:
    """Decode a VOYO id to its YouTube id, raising InvalidInput if malformed."""
    body = voyo_id.removeprefix(VOYO_PREFIX)
    if body == voyo_id or not _VOYO_BODY.fullmatch(body):
        raise InvalidInput(
            "invalid VOYO id: expected 'vyo_' and 15 base64url characters"
        )
    try:
        decoded = base64.urlsafe_b64decode(body + "=").decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidInput("invalid VOYO id: its body is not base64url") from None
    # The last character carries two spare bits; only the canonical spelling
    # is accepted, so each track has exactly one VOYO id.
    if not _VIDEO_ID.fullmatch(decoded) or encode_voyo_id(decoded) != voyo_id:
        raise InvalidInput("invalid VOYO id: it does not encode a YouTube video id")
    return decoded


def parse_track_ref(raw: str | None, *, name: str = "id") -> str:
    """Return the YouTube id named by ``raw``, a VOYO id or a YouTube id."""
    if raw is not None and raw.startswith(VOYO_PREFIX):
        return decode_voyo_id(raw)
    return parse_video_id(raw, name=name)
