"""CORS, logs and timeouts of the running app."""

from __future__ import annotations

import logging
from functools import partial

import httpx
import pytest
import trio
import trio.lowlevel

from voyo_trio import Settings
from voyo_trio.standin import CATALOG, StandIn, Track

from .conftest import STEP_TIMEOUT_S, start_app
from .test_stream import assert_json_error

LISTED = "http://localhost:5173"


async def test_cors_listed_origin_is_echoed(client: httpx.AsyncClient) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get("/health", headers={"Origin": LISTED})
    assert response.headers["access-control-allow-origin"] == LISTED
    assert "Origin" in response.headers["vary"]
    exposed = response.headers["access-control-expose-headers"]
    for name in ("Content-Range", "Content-Length", "Accept-Ranges"):
        assert name in exposed


async def test_cors_unlisted_origin_gets_nothing(client: httpx.AsyncClient) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get(
            "/health", headers={"Origin": "https://evil.example"}
        )
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    assert "Origin" in response.headers["vary"]


@pytest.mark.parametrize("path", ["/proxy", "/stream", "/no-such-route"])
async def test_cors_preflight_allows_range(
    client: httpx.AsyncClient, path: str
) -> None:
    headers = {
        "Origin": LISTED,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "range",
    }
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.options(path, headers=headers)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == LISTED
    assert "Range" in response.headers["access-control-allow-headers"]
    assert "GET" in response.headers["access-control-allow-methods"]


async def test_cors_on_proxied_media(client: httpx.AsyncClient, track: Track) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get(
            "/proxy",
            params={"v": track.video_id},
            headers={"Origin": LISTED, "Range": "bytes=0-9"},
        )
    assert response.status_code == 206
    assert response.headers["access-control-allow-origin"] == LISTED


async def test_request_log_line(
    client: httpx.AsyncClient, track: Track, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voyo_trio")
    with trio.fail_after(STEP_TIMEOUT_S):
        await client.get("/stream", params={"v": track.video_id})
        await client.get("/stream", params={"v": "bad"})
    access = [r.getMessage() for r in caplog.records if r.name == "voyo_trio.access"]
    assert len(access) == 2
    assert access[0].startswith("GET /stream 200 ")
    assert access[0].endswith(f"video_id={track.video_id}")
    assert access[1].startswith("GET /stream 400 ")
    resolved = [r for r in caplog.records if r.getMessage().startswith("resolved ")]
    assert len(resolved) == 1
    assert "127.0.0.1" not in resolved[0].getMessage()


async def test_api_key_not_logged(
    settings: Settings, track: Track, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "AIza-test-secret-key-000"
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await start_app(
            nursery, settings.replace(yt_api_key=secret), shutdown
        )
        async with httpx.AsyncClient(base_url=running.url) as http:
            with trio.fail_after(STEP_TIMEOUT_S):
                await http.get("/stream", params={"v": track.video_id})
                await http.get("/stream", params={"v": "zzzzzzzzzzz"})
                health = await http.get("/health")
        shutdown.set()
    assert secret not in health.text
    assert caplog.records
    assert all(secret not in record.getMessage() for record in caplog.records)


async def _silent_server(stream: trio.SocketStream) -> None:
    # Accept and read, never respond: an upstream that hangs.
    async for _ in stream:
        pass


async def test_extraction_timeout_is_504(settings: Settings) -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_tcp, _silent_server, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        hanging = settings.replace(
            watch_url_template=f"http://127.0.0.1:{port}/watch?v={{id}}",
            extract_timeout_s=1,
            extract_socket_timeout_s=2,
        )
        shutdown = trio.Event()
        running = await start_app(nursery, hanging, shutdown)
        async with httpx.AsyncClient(base_url=running.url) as http:
            with trio.fail_after(STEP_TIMEOUT_S):
                response = await http.get("/stream", params={"v": "abcdefghijk"})
                health = await http.get("/health")
        assert_json_error(response, 504)
        assert health.json()["extraction"]["timeouts"] == 1
        # The thread still waits on the silent server, with no caller left.
        assert health.json()["workerThreads"] == {"running": 1, "abandoned": 1}
        shutdown.set()
        await trio.lowlevel.checkpoint()
        nursery.cancel_scope.cancel()


async def test_page_without_media_is_503(settings: Settings, standin: StandIn) -> None:
    # A JPEG is no page yt-dlp can read a stream from.
    imageonly = settings.replace(
        watch_url_template=f"{standin.base_url}/vi/{{id}}/default.jpg"
    )
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await start_app(nursery, imageonly, shutdown)
        async with httpx.AsyncClient(base_url=running.url) as http:
            with trio.fail_after(STEP_TIMEOUT_S):
                response = await http.get("/stream", params={"v": CATALOG[0].video_id})
        shutdown.set()
    body = assert_json_error(response, 503)
    assert "no playable audio format" in str(body["error"])
    assert "https://" not in str(body["error"])


async def test_oversized_headers_are_refused(client: httpx.AsyncClient) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        try:
            response = await client.get(
                "/health", headers={"X-Padding": "a" * 64 * 1024}
            )
        except httpx.RemoteProtocolError:
            return  # the server closed the connection: refused
    assert response.status_code in (400, 413, 431)
