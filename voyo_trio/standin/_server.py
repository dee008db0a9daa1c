"""StandIn: the HTTPS server that plays YouTube's watch pages and media host."""

from __future__ import annotations

import gzip
import json
import logging
import pathlib
import ssl
from collections.abc import Sequence

import trio
import trustme

from ._audio import AUDIO_FORMATS, QUALITIES, render_wav, require_format
from ._catalog import Catalog, Track, find_track
from ._faults import Fault
from ._http import Exchange, Request, Route, TlsStream, respond_text, serve_connection
from ._innertube import matching_tracks, search_response
from ._media import MEDIA_PREFIX, MediaHost
from ._stats import StandInStats
from ._thumbs import has_thumbnail, thumbnail_bytes
from ._watch import Source, render_not_found_page, render_watch_page

logger = logging.getLogger(__name__)

_READ_METHODS = frozenset({"GET", "HEAD"})
_HTML = ("Content-Type", "text/html; charset=utf-8")
_JSON = ("Content-Type", "application/json")
SEARCH_PATH = "/youtubei/v1/search"
THUMBNAIL_PREFIX = "/vi/"
_SERVER = ("Server", "standin")


class StandIn:
    """Loopback HTTPS stand-in for YouTube watch pages and googlevideo media.

    It signs its certificate for 127.0.0.1 and localhost with its own
    ``ca``. Start it with ``await nursery.start(standin.serve)``, which
    returns ``base_url`` once the server is listening.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        url_ttl_s: float = 6 * 3600,
        idle_timeout_s: float = 30.0,
        catalog: Sequence[Track] | None = None,
        media_base_url: str | None = None,
    ) -> None:
        self.ca = trustme.CA()
        self.stats = StandInStats()
        self._host = host
        self._requested_port = port
        self._bound_port: int | None = None
        self._idle_timeout_s = idle_timeout_s
        self._ssl_context = self._make_ssl_context(host)
        # Tracks served in place of CATALOG, such as longer ones for benchmarks.
        self._catalog = Catalog() if catalog is None else Catalog(catalog)
        # Origin of the media URLs that pages list, such as a relay in front of
        # this server; None means this server's own base_url.
        self._media_base_url = media_base_url
        self._media = MediaHost(self.stats, url_ttl_s, self._catalog)
        # When set, the innertube search returns this status with no results.
        self.search_status: int | None = None
        self._routes = (
            Route(_READ_METHODS, "/watch", self._handle_watch),
            Route(_READ_METHODS, MEDIA_PREFIX, self._media.handle),
            Route(frozenset({"POST"}), SEARCH_PATH, self._handle_search),
            Route(_READ_METHODS, THUMBNAIL_PREFIX, self._handle_thumbnail),
        )

    def _make_ssl_context(self, host: str) -> ssl.SSLContext:
        identities = dict.fromkeys(("127.0.0.1", "localhost", host))
        certificate = self.ca.issue_cert(*identities)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(context)
        context.set_alpn_protocols(["http/1.1"])
        return context

    @property
    def port(self) -> int:
        """TCP port the server listens on, known once it is serving."""
        if self._bound_port is not None:
            return self._bound_port
        if self._requested_port:
            return self._requested_port
        raise RuntimeError(
            "StandIn has no port yet: start it with nursery.start(standin.serve)"
        )

    @property
    def base_url(self) -> str:
        """Origin of the server, such as ``https://127.0.0.1:PORT``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"https://{host}:{self.port}"

    @property
    def _media_origin(self) -> str:
        return self._media_base_url or self.base_url

    @property
    def watch_url_template(self) -> str:
        """Watch page URL with a literal ``{id}`` placeholder for str.format."""
        return f"{self.base_url}/watch?v={{id}}"

    def write_ca_pem(self, path: pathlib.Path) -> pathlib.Path:
        """Write the CA certificate in PEM form to path and return the path."""
        self.ca.cert_pem.write_to_path(str(path))
        return path

    def audio_bytes(self, video_id: str, quality: str) -> bytes:
        """Return the exact bytes of the file the media host serves."""
        require_format(quality)
        return render_wav(self._catalog.require(video_id), quality)

    def media_url(self, video_id: str, quality: str) -> str:
        """Return a newly signed media URL, the one a watch page would list now."""
        self._catalog.require(video_id)
        require_format(quality)
        return self._media.media_url(self._media_origin, video_id, quality)

    def set_fault(self, video_id: str, fault: Fault | None) -> None:
        """Apply a fault to the track's media requests, or clear it with None."""
        self._media.set_fault(video_id, fault)

    def revoke(self, video_id: str) -> None:
        """Make every media URL issued so far for the track get 403 responses."""
        self._media.revoke(video_id)

    async def serve(
        self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen, report ``base_url`` through task_status, serve until cancelled."""
        listeners = await trio.open_ssl_over_tcp_listeners(
            self._requested_port,
            self._ssl_context,
            host=self._host,
            https_compatible=True,
        )
        try:
            await self._serve_listeners(listeners, task_status)
        finally:
            await _close_listeners(listeners)
            logger.info("stand-in at %s stopped", self.base_url)

    async def _serve_listeners(
        self,
        listeners: list[trio.SSLListener[trio.SocketStream]],
        task_status: trio.TaskStatus[str],
    ) -> None:
        self._bound_port = _listening_port(listeners[0])
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._serve_connection, listeners)
            logger.info("stand-in listening at %s", self.base_url)
            task_status.started(self.base_url)

    async def _serve_connection(self, stream: TlsStream) -> None:
        self.stats.connections_accepted += 1
        self.stats.open_connections += 1
        try:
            await serve_connection(stream, self._routes, self._idle_timeout_s)
        finally:
            self.stats.open_connections -= 1

    async def _handle_watch(self, request: Request, exchange: Exchange) -> None:
        video_id = request.query_value("v")
        if video_id is not None:
            self.stats.watch_requests[video_id] += 1
        track = None if video_id is None else self._catalog.find(video_id)
        if video_id is None or track is None:
            page = render_not_found_page(video_id or "")
            await exchange.respond(404, [_SERVER, _HTML], page.encode())
            return
        sources = [self._source(track.video_id, quality) for quality in QUALITIES]
        page = render_watch_page(track, sources)
        await exchange.respond(200, [_SERVER, _HTML], page.encode())

    async def _handle_search(self, request: Request, exchange: Exchange) -> None:
        self.stats.search_requests += 1
        if self.search_status is not None:
            await respond_text(exchange, self.search_status, "search is failing")
            return
        try:
            query = str(json.loads(request.body)["query"])
        except (ValueError, KeyError, TypeError):
            await respond_text(exchange, 400, "expected a JSON body with 'query'")
            return
        body = json.dumps(search_response(query, matching_tracks(query)))
        await exchange.respond(200, [_SERVER, _JSON], body.encode())

    @property
    def gzip_bodies(self) -> bool:
        """Whether media and thumbnails go out gzip-compressed, requested or not."""
        return self._media.gzip_bodies

    @gzip_bodies.setter
    def gzip_bodies(self, value: bool) -> None:
        self._media.gzip_bodies = value

    async def _handle_thumbnail(self, request: Request, exchange: Exchange) -> None:
        # Paths look like /vi/VIDEO_ID/NAME.jpg, as on i.ytimg.com.
        parts = request.path.removeprefix(THUMBNAIL_PREFIX).split("/")
        video_id, file_name = (parts[0], parts[1]) if len(parts) == 2 else ("", "")
        name = file_name.removesuffix(".jpg")
        self.stats.thumbnail_requests[f"{video_id}/{name}"] += 1
        track = find_track(video_id)
        if (
            track is None
            or not file_name.endswith(".jpg")
            or not has_thumbnail(track, name)
        ):
            await respond_text(exchange, 404, "no such thumbnail")
            return
        image = thumbnail_bytes(track, name)
        headers = [_SERVER, ("Content-Type", "image/jpeg")]
        if self._media.gzip_bodies:
            image = gzip.compress(image)
            headers.append(("Content-Encoding", "gzip"))
        await exchange.respond(200, headers, image)

    def _source(self, video_id: str, quality: str) -> Source:
        url = self._media.media_url(self._media_origin, video_id, quality)
        return Source(url=url, label=AUDIO_FORMATS[quality].label)


async def _close_listeners(
    listeners: list[trio.SSLListener[trio.SocketStream]],
) -> None:
    for listener in listeners:
        await trio.aclose_forcefully(listener)


def _listening_port(listener: trio.SSLListener[trio.SocketStream]) -> int:
    transport = listener.transport_listener
    if not isinstance(transport, trio.SocketListener):
        raise TypeError(f"expected a trio.SocketListener, got {transport!r}")
    port: int = transport.socket.getsockname()[1]
    return port
