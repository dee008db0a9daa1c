"""The app factory: a QuartTrio app with its services, errors, CORS and logs."""

from __future__ import annotations

import logging
import math
from typing import Any, cast

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable
from quart import Response, g, request
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIHTTPConnection
from werkzeug.exceptions import HTTPException

from ._cors import CorsPolicy
from ._errors import RateLimited, VoyoError
from ._library_routes import library_blueprint
from ._proxy import StreamAborted, close_request_streams
from ._request_limits import charge_request
from ._responses import error_response
from ._routes import blueprint
from ._search_routes import search_blueprint
from ._services import EXTENSION_KEY, Services
from ._settings import Settings

__all__ = ["create_app"]

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("voyo_trio.access")


class _HTTPConnection(TrioASGIHTTPConnection):
    """Close a request's streams when its ASGI call ends, however it ends."""

    async def __call__(
        self, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        try:
            await super().__call__(receive, send)
        except* StreamAborted:
            # Returning without the last body message makes Hypercorn close
            # the connection, so the listener gets a short body. The pump has
            # logged why.
            pass
        finally:
            close_request_streams(cast(dict[str, Any], self.scope))


def create_app(settings: Settings | None = None) -> QuartTrio:
    """Build the app; settings default to those read from the environment.

    The services start with the ASGI lifespan, so the app must be served by a
    server that runs it, such as Hypercorn.
    """
    settings = Settings.from_env() if settings is None else settings
    _quiet_url_loggers()
    app = QuartTrio(__name__)
    app.asgi_http_class = _HTTPConnection
    app.config["RESPONSE_TIMEOUT"] = None
    # Keep the field order of the Node server's JSON.
    app.json.sort_keys = False  # type: ignore[attr-defined]
    voyo = Services(settings)
    app.extensions[EXTENSION_KEY] = voyo
    _install_lifespan(app, voyo)
    _install_request_hooks(app, CorsPolicy(settings.cors_origins))
    _install_error_handlers(app)
    app.register_blueprint(blueprint)
    app.register_blueprint(search_blueprint)
    app.register_blueprint(library_blueprint)
    return app


def _quiet_url_loggers() -> None:
    # httpx logs each request's URL at INFO, and stream URLs carry the
    # resolving server's address. Unless the operator set their level, keep
    # those loggers at WARNING.
    for name in ("httpx", "httpcore"):
        library_logger = logging.getLogger(name)
        if library_logger.level == logging.NOTSET:
            library_logger.setLevel(logging.WARNING)


def _install_lifespan(app: QuartTrio, voyo: Services) -> None:
    @app.before_serving
    async def start_services() -> None:
        await app.nursery.start(voyo.run)
        logger.info(
            "services started: %d media host patterns", len(voyo.settings.media_hosts)
        )

    @app.after_serving
    async def stop_services() -> None:
        await voyo.stop()
        logger.info("services stopped")


def _install_request_hooks(app: QuartTrio, cors: CorsPolicy) -> None:
    @app.before_request
    async def start_request() -> Response | None:
        g.started = trio.current_time()
        if request.method == "OPTIONS":
            return cors.preflight()
        charge_request()
        return None

    @app.after_request
    async def finish_request(response: Response) -> Response:
        cors.apply(response, request.headers.get("Origin"))
        _log_request(response)
        return response


def _log_request(response: Response) -> None:
    if not access_logger.isEnabledFor(logging.INFO):
        return
    started = g.get("started", trio.current_time())
    access_logger.info(
        "%s %s %d %.1f ms video_id=%s",
        request.method,
        printable(request.path),
        response.status_code,
        (trio.current_time() - started) * 1000,
        g.get("video_id", "-"),
    )


_MAX_LOGGED_CHARS = 200


def printable(text: str) -> str:
    """Escape control characters and cut ``text`` for one log line, so a
    client cannot forge log records with newlines or terminal escapes."""
    escaped = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return escaped[:_MAX_LOGGED_CHARS]


def _install_error_handlers(app: QuartTrio) -> None:
    app.register_error_handler(VoyoError, _voyo_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)


async def _voyo_error(error: VoyoError) -> Response:
    video_id = g.get("video_id", "-")
    if error.status >= 500 and not error.expected:
        logger.warning(
            "%s %s failed video_id=%s: %s",
            request.method,
            request.path,
            video_id,
            error,
        )
    if isinstance(error, RateLimited):
        retry_after = max(1, math.ceil(error.retry_after_s))
        response = error_response(
            str(error), 429, reason=error.reason, retryAfter=retry_after
        )
        response.headers["Retry-After"] = str(retry_after)
        return response
    response = error_response(str(error), error.status)
    retry_after_s = getattr(error, "retry_after_s", None)
    if retry_after_s is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
    return response


async def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    if status == 404:
        message = f"not found: {request.path}"
    elif status == 405:
        message = f"method {request.method} is not allowed on {request.path}"
    else:
        message = (error.name or "error").lower()
    response = error_response(message, status)
    for name, value in error.get_headers():
        if name.lower() == "allow":
            response.headers["Allow"] = value
    return response


async def _unexpected_error(error: Exception) -> Response:
    logger.exception(
        "%s %s raised an unexpected error video_id=%s",
        request.method,
        request.path,
        g.get("video_id", "-"),
    )
    return error_response("internal server error", 500)
