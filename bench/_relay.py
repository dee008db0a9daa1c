"""A userspace TCP relay that adds network latency on loopback without root.

Linux netem needs root and a kernel module that these machines lack, so the
relay plays the network instead. Each accepted connection gets its own
upstream connection and two forwarding directions. A direction reads a
chunk, stamps it with the time it may leave (arrival plus the one-way delay),
and a separate writer task sends it once that time has come. Order is kept
within a direction, and each connection runs in its own tasks, so a slow
connection does not delay another.

A real TCP connection spends one round trip on its handshake before the
client's first byte can leave, while a loopback connect returns at once. So
client bytes are held until one round trip after the accept, then delayed
like any other bytes. The relay copies bytes only, so TLS passes end to end.
"""

from __future__ import annotations

import logging
from functools import partial

import trio

__all__ = ["LatencyRelay"]

logger = logging.getLogger(__name__)

_RECEIVE_BYTES = 64 * 1024
# Chunks queued per direction, at most 64 KiB each. A full queue stops the
# reader, so backpressure still reaches the sender.
_QUEUE_CHUNKS = 64


class LatencyRelay:
    """Forward loopback TCP connections to one target after a delay.

    ``rtt_s`` may change at any time and applies to bytes read after the
    change. ``connections_accepted`` counts accepted client connections.
    """

    def __init__(self, target_host: str, target_port: int, *, rtt_s: float) -> None:
        if rtt_s < 0:
            raise ValueError(f"rtt_s must be >= 0, got {rtt_s!r}")
        self.target_host = target_host
        self.target_port = target_port
        self.rtt_s = rtt_s
        self.connections_accepted = 0
        self.port: int | None = None

    @property
    def one_way_s(self) -> float:
        """Delay added to each byte in each direction, in seconds."""
        return self.rtt_s / 2

    async def serve(
        self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on 127.0.0.1, report the port, relay until cancelled."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        logger.debug("relay listening on 127.0.0.1:%d", self.port)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._relay, listeners)
                task_status.started(self.port)
        finally:
            # trio.serve_listeners leaves closing its listeners to the caller.
            with trio.CancelScope(shield=True):
                for listener in listeners:
                    await trio.aclose_forcefully(listener)

    async def _relay(self, client: trio.SocketStream) -> None:
        # The handshake round trip starts at the accept.
        client_open_at = trio.current_time() + self.rtt_s
        self.connections_accepted += 1
        try:
            target = await trio.open_tcp_stream(self.target_host, self.target_port)
        except OSError as error:
            logger.warning(
                "relay could not connect to %s:%d: %s",
                self.target_host,
                self.target_port,
                error,
            )
            await trio.aclose_forcefully(client)
            return
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._direction, client, target, client_open_at)
                nursery.start_soon(self._direction, target, client, 0.0)
        except* (trio.BrokenResourceError, trio.ClosedResourceError) as group:
            logger.debug("relayed connection ended: %r", group.exceptions[0])
        finally:
            # Under cancellation the first checkpoint would raise and skip the
            # second close, so both closes are shielded.
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(client)
                await trio.aclose_forcefully(target)

    async def _direction(
        self, source: trio.SocketStream, sink: trio.SocketStream, open_at: float
    ) -> None:
        send, receive = trio.open_memory_channel[tuple[float, bytes]](_QUEUE_CHUNKS)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(self._read, source, send, open_at))
            nursery.start_soon(_write, receive, sink)

    async def _read(
        self,
        source: trio.SocketStream,
        send: trio.MemorySendChannel[tuple[float, bytes]],
        open_at: float,
    ) -> None:
        async with send:
            while True:
                data = await source.receive_some(_RECEIVE_BYTES)
                due = max(trio.current_time(), open_at) + self.one_way_s
                # An empty chunk is the end of the stream, sent on as a FIN.
                await send.send((due, bytes(data)))
                if not data:
                    return


async def _write(
    receive: trio.MemoryReceiveChannel[tuple[float, bytes]],
    sink: trio.SocketStream,
) -> None:
    async with receive:
        async for due, data in receive:
            await trio.sleep_until(due)
            if not data:
                await sink.send_eof()
                return
            await sink.send_all(data)
