"""Serve the app under Hypercorn's Trio worker with a graceful shutdown."""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from ._app import create_app
from ._settings import Settings

__all__ = ["hypercorn_config", "serve", "wait_for_signal"]

logger = logging.getLogger(__name__)

# h11 buffers at most this many bytes of a request head that it has not
# parsed yet, and a longer head that arrives in pieces gets 431. A head that
# arrives in one read of up to 64 KiB is parsed whole.
_MAX_INCOMPLETE_HEAD_BYTES = 16 * 1024
# Seconds past the grace period after which a shutdown stops waiting.
_FORCE_EXIT_MARGIN_S = 5.0
# Connections waiting to be accepted; Hypercorn's default of 100 overflows
# when hundreds of listeners connect at once.
_BACKLOG = 1024
# Bytes a connection may hold unsent in the kernel, which bounds the kernel
# memory one slow listener takes. Bytes in flight to the listener's own
# receive buffer are not bounded by it.
_NOT_SENT_LOW_WATER_BYTES = 128 * 1024


def hypercorn_config(settings: Settings) -> Config:
    """Build a Hypercorn config for the bind address and grace period."""
    config = Config()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.port}"]
    config.graceful_timeout = settings.shutdown_grace_s
    config.h11_max_incomplete_size = _MAX_INCOMPLETE_HEAD_BYTES
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.backlog = _BACKLOG
    # Responses do not name the server software.
    config.include_server_header = False
    return config


async def wait_for_signal() -> None:
    """Return on the first SIGINT or SIGTERM."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logger.info("received %s; shutting down", signal.Signals(signum).name)
            return


def listening_sockets(config: Config, settings: Settings) -> Sockets:
    """Bind and listen, raising OSError when the address cannot be used.

    A listener that stops reading leaves its connection blocked in a write
    that Hypercorn does not cancel. TCP_USER_TIMEOUT makes the kernel drop
    such a connection once its data stays unacknowledged for
    ``stream_idle_timeout_s``. Accepted sockets inherit both options set here
    on Linux; other systems lack them and go without.
    """
    sockets = config.create_sockets()
    for sock in sockets.insecure_sockets:
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            timeout_ms = int(settings.stream_idle_timeout_s * 1000)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, timeout_ms)
        if hasattr(socket, "TCP_NOTSENT_LOWAT"):
            sock.setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, _NOT_SENT_LOW_WATER_BYTES
            )
        sock.listen(config.backlog)
    return sockets


async def serve(
    settings: Settings,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the app until ``shutdown_trigger`` returns.

    Follows the ``nursery.start`` protocol: reports the bound URLs once
    listening. On shutdown Hypercorn stops accepting, gives open responses
    ``shutdown_grace_s`` seconds to finish, then cancels them. A connection
    stuck writing to a listener who reads nothing cannot be cancelled, so a
    few seconds after the grace period the process exits anyway.
    """
    app = create_app(settings)
    config = hypercorn_config(settings)
    sockets = listening_sockets(config, settings)
    stopping = trio.Event()

    async def trigger() -> None:
        assert shutdown_trigger is not None
        await shutdown_trigger()
        stopping.set()

    async with trio.open_nursery() as nursery:
        deadline_s = settings.shutdown_grace_s + _FORCE_EXIT_MARGIN_S
        nursery.start_soon(_exit_when_stuck, stopping, deadline_s)
        await worker_serve(
            wrap_app(app, config.wsgi_max_body_size, None),
            config,
            sockets=sockets,
            shutdown_trigger=None if shutdown_trigger is None else trigger,
            task_status=task_status,
        )
        nursery.cancel_scope.cancel()


async def _exit_when_stuck(stopping: trio.Event, deadline_s: float) -> None:
    await stopping.wait()
    await trio.sleep(deadline_s)
    logger.error(
        "connections still open %g s after shutdown began; exiting without"
        " waiting for them",
        deadline_s,
    )
    logging.shutdown()
    # NOTE: this skips the lifespan shutdown; partial downloads left behind
    # are removed at the next start.
    os._exit(0)
