"""HMAC signatures that make media URLs unforgeable, like googlevideo's."""

from __future__ import annotations

import hashlib
import hmac
import secrets


class UrlSigner:
    """HMAC-SHA256 over a media URL's video id, quality, expiry and generation."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = secrets.token_bytes(32) if key is None else key

    def sign(self, video_id: str, quality: str, expire: str, generation: str) -> str:
        """Return the hex signature of these URL fields."""
        message = "\n".join((video_id, quality, expire, generation)).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def verify(
        self,
        video_id: str,
        quality: str,
        expire: str,
        generation: str,
        signature: str,
    ) -> bool:
        """Return whether signature matches the fields, in constant time."""
        expected = self.sign(video_id, quality, expire, generation)
        return hmac.compare_digest(expected.encode(), signature.encode())
