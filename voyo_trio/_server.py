"""Serve the app under Hypercorn's Trio worker with a graceful shutdown."""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from ._app import create_app
from ._settings import Settings

__all__ = ["hypercorn_config", "serve", "wait_for_signal"]

logger = logging.getLogger(__name__)

# Request lines and header blocks larger than this are refused by Hypercorn.
_MAX_HEADER_BYTES = 16 * 1024


def hypercorn_config(settings: Settings) -> Config:
    """Build a Hypercorn config for the bind address and grace period."""
    config = Config()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.port}"]
    config.graceful_timeout = settings.shutdown_grace_s
    config.h11_max_incomplete_size = _MAX_HEADER_BYTES
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


async def wait_for_signal() -> None:
    """Return on the first SIGINT or SIGTERM."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logger.info("received %s; shutting down", signal.Signals(signum).name)
            return


async def serve(
    settings: Settings,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the app until ``shutdown_trigger`` returns.

    Follows the ``nursery.start`` protocol: reports the bound URLs once
    listening. On shutdown Hypercorn stops accepting, gives open responses
    ``shutdown_grace_s`` seconds to finish, then cancels them.
    """
    app = create_app(settings)
    config = hypercorn_config(settings)
    await hypercorn_serve(
        app, config, shutdown_trigger=shutdown_trigger, task_status=task_status
    )
