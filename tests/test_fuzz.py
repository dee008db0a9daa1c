"""Random input at every route of the running app: never a 500, always JSON errors.

The app and the stand-in run on their own Trio loop in a background thread, so
Hypothesis drives one server through many examples with a plain client.
``VOYO_FUZZ_EXAMPLES`` sets the number of examples (default 150).
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voyo_trio import Settings, encode_voyo_id
from voyo_trio._cli import standin_settings
from voyo_trio.standin import CATALOG, StandIn

from .conftest import start_app

EXAMPLES = int(os.environ.get("VOYO_FUZZ_EXAMPLES", "150"))
ROUTES = [
    "/health",
    "/stream",
    "/proxy",
    "/prefetch",
    "/search",
    "/api/search",
    "/thumbnail",
    "/cdn/stream/",
    "/cdn/art/",
    "/download",
    "/downloaded",
    "/",
]
PARAMETERS = ["v", "id", "q", "limit", "quality", "type"]
UPSTREAM_STATUSES = {502, 503, 504}
# Header values a client can send: visible ASCII and spaces.
# h11 refuses to send values with leading or trailing whitespace.
HEADER_TEXT = (
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
    .map(str.strip)
    .filter(bool)
)


class ServerThread:
    """Run the stand-in and the app on a Trio loop in a daemon thread."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._ready: queue.Queue[str | BaseException] = queue.Queue()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(
            target=trio.run, args=(self._main,), daemon=True
        )

    def start(self) -> str:
        self._thread.start()
        ready = self._ready.get(timeout=60)
        if isinstance(ready, BaseException):
            raise ready
        return ready

    def stop(self) -> None:
        assert self._token is not None
        assert self._stop is not None
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(timeout=60)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                url = await self._start(nursery)
                self._ready.put(url)
                await self._stop.wait()
                nursery.cancel_scope.cancel()
        except BaseException as error:
            self._ready.put(error)
            raise

    async def _start(self, nursery: trio.Nursery) -> str:
        standin = StandIn()
        await nursery.start(standin.serve)
        ca_file = standin.write_ca_pem(self._folder / "ca.pem")
        app_settings = standin_settings(
            Settings(),
            standin,
            ca_file,
            port=0,
            library_dir=self._folder / "library",
            download_wait_s=1,
            rate_limit_enabled=False,
            extract_timeout_s=10,
        )
        running = await start_app(nursery, app_settings, trio.Event())
        return running.url


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        server = ServerThread(Path(folder))
        url = server.start()
        yield url
        server.stop()


@pytest.fixture(scope="module")
def http(server_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server_url, timeout=30) as client:
        yield client


track_ids = st.sampled_from(
    [t.video_id for t in CATALOG] + [encode_voyo_id(CATALOG[0].video_id)]
)
values = st.one_of(
    st.text(max_size=40),
    track_ids,
    st.sampled_from(["low", "high", "max", "video", "-1", "50"]),
)
segments = st.one_of(st.text(max_size=30), track_ids)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=st.sampled_from(ROUTES),
    segment=segments,
    params=st.dictionaries(st.sampled_from(PARAMETERS), values, max_size=4),
    range_header=st.one_of(
        st.none(),
        HEADER_TEXT,
        st.sampled_from(["bytes=0-99", "bytes=-5", "bytes=99999999-"]),
    ),
    origin=st.one_of(st.none(), HEADER_TEXT, st.just("http://localhost:5173")),
    forwarded_for=st.one_of(st.none(), HEADER_TEXT),
    method=st.sampled_from(["GET", "GET", "GET", "HEAD", "DELETE", "OPTIONS", "POST"]),
)
def test_fuzz_every_route(
    http: httpx.Client,
    route: str,
    segment: str,
    params: dict[str, str],
    range_header: str | None,
    origin: str | None,
    forwarded_for: str | None,
    method: str,
) -> None:
    path = route + quote(segment, safe="") if route.endswith("/") else route
    headers = {
        name: value
        for name, value in (
            ("Range", range_header),
            ("Origin", origin),
            ("X-Forwarded-For", forwarded_for),
        )
        if value is not None
    }
    response = http.request(method, path, params=params, headers=headers)
    status = response.status_code
    assert status < 500 or status in UPSTREAM_STATUSES, (status, response.text[:300])
    if status >= 400 and method != "HEAD":
        assert response.headers["content-type"].startswith("application/json"), (
            response.text[:300]
        )
        assert isinstance(response.json()["error"], str)


def test_fuzz_server_still_healthy(http: httpx.Client) -> None:
    response = http.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
