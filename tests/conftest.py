"""Shared fixtures: the stand-in over HTTPS and the real app under Hypercorn."""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
from hypercorn.trio import serve as hypercorn_serve
from quart_trio import QuartTrio

from voyo_trio import Settings, create_app
from voyo_trio._cli import standin_settings
from voyo_trio._server import hypercorn_config
from voyo_trio._services import EXTENSION_KEY, Services
from voyo_trio._threads import thread_counts
from voyo_trio.standin import CATALOG, StandIn, Track

# Every network step of a test runs under this deadline.
STEP_TIMEOUT_S = 20

# A yt-dlp thread left behind by a test ends within its socket timeout.
WORKER_DRAIN_S = 60


@dataclass
class RunningApp:
    app: QuartTrio
    url: str

    @property
    def services(self) -> Services:
        services: Services = self.app.extensions[EXTENSION_KEY]
        return services


@pytest.fixture(autouse=True)
def worker_threads_end() -> Iterator[None]:
    """Let each test's yt-dlp threads end before the next test starts.

    An abandoned thread still runs yt-dlp, which draws from the global
    ``random`` module; left running, it would meet the next test's work.
    """
    yield
    deadline = time.monotonic() + WORKER_DRAIN_S
    while thread_counts().running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert thread_counts().running == 0, "a yt-dlp worker thread outlived its test"


@pytest.fixture
def track() -> Track:
    return CATALOG[0]


@pytest.fixture
async def standin(nursery: trio.Nursery) -> StandIn:
    server = StandIn()
    await nursery.start(server.serve)
    return server


@pytest.fixture
def ca_file(standin: StandIn, tmp_path: Path) -> Path:
    return standin.write_ca_pem(tmp_path / "standin-ca.pem")


@pytest.fixture
def settings(standin: StandIn, ca_file: Path, tmp_path: Path) -> Settings:
    return standin_settings(
        Settings(),
        standin,
        ca_file,
        library_dir=tmp_path / "library",
        port=0,
        # Limits have their own tests; elsewhere they would only add noise.
        rate_limit_enabled=False,
        extract_timeout_s=15,
        stream_idle_timeout_s=30,
        shutdown_grace_s=2,
    )


async def start_app(
    nursery: trio.Nursery, settings: Settings, shutdown: trio.Event
) -> RunningApp:
    """Serve a new app on an ephemeral loopback port until ``shutdown`` is set."""
    app = create_app(settings)
    config = hypercorn_config(settings)
    binds = await nursery.start(
        partial(hypercorn_serve, app, config, shutdown_trigger=shutdown.wait)
    )
    return RunningApp(app=app, url=binds[0])


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[RunningApp]:
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        yield await start_app(nursery, settings, shutdown)
        shutdown.set()


@pytest.fixture
async def client(running: RunningApp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=running.url, timeout=STEP_TIMEOUT_S) as http:
        yield http


@pytest.fixture
def standin_ssl(standin: StandIn) -> ssl.SSLContext:
    context = ssl.create_default_context()
    standin.ca.configure_trust(context)
    return context


async def wait_for(
    predicate: Callable[[], bool], timeout_s: float = STEP_TIMEOUT_S
) -> None:
    """Poll ``predicate`` until it holds; counters in the app have no event."""
    with trio.fail_after(timeout_s):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.005)
