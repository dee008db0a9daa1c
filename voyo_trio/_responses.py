"""The JSON error body that every failing route answers with."""

from __future__ import annotations

from typing import Any

from quart import Response, current_app

__all__ = ["error_response"]


def error_response(message: str, status: int, **extra: Any) -> Response:
    """Build ``{"error": message, ...extra}`` with ``status``."""
    body = current_app.json.dumps({"error": message, **extra})
    return Response(body, status=status, mimetype="application/json")
