"""The command line as a user runs it: real processes, signals, exit codes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from voyo_trio.standin import CATALOG

PROCESS_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class LineReader:
    """Read a subprocess's output line by line."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""
        self.lines: list[str] = []

    async def until(self, fragment: str) -> str:
        """Return the first line containing ``fragment``."""
        while True:
            while b"\n" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\n", 1)
                line = raw.decode("utf-8", "replace")
                self.lines.append(line)
                if fragment in line:
                    return line
            chunk = await self._stream.receive_some()
            if not chunk:
                raise EOFError(f"output ended before {fragment!r}: {self.lines}")
            self._buffer += chunk


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOYO_")}
    env.update(extra)
    return env


async def start_demo(
    grace_s: str,
) -> AsyncIterator[tuple[trio.Process, str, LineReader]]:
    """Run ``voyo-trio demo`` on a free port; yield it with its URL."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "voyo_trio", "demo", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=child_env(VOYO_SHUTDOWN_GRACE_S=grace_s),
    )
    assert process.stdout is not None
    reader = LineReader(process.stdout)
    try:
        with trio.fail_after(PROCESS_TIMEOUT_S):
            line = await reader.until("demo serving on ")
        url = line.split("demo serving on ")[1].split()[0]
        yield process, url, reader
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


@pytest.fixture
async def demo() -> AsyncIterator[tuple[trio.Process, str, LineReader]]:
    async for running in start_demo("5"):
        yield running


@pytest.fixture
async def quick_demo() -> AsyncIterator[tuple[trio.Process, str, LineReader]]:
    async for running in start_demo("1"):
        yield running


async def test_bad_setting_exits_2() -> None:
    with trio.fail_after(PROCESS_TIMEOUT_S):
        result = await trio.run_process(
            [sys.executable, "-m", "voyo_trio", "serve"],
            env=child_env(VOYO_PORT="not-a-port"),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 2
    message = result.stderr.decode().strip()
    assert "VOYO_PORT" in message
    assert "not-a-port" in message
    assert len(message.splitlines()) == 1


async def test_demo_prints_catalog_and_serves(
    demo: tuple[trio.Process, str, LineReader],
) -> None:
    _, url, reader = demo
    with trio.fail_after(PROCESS_TIMEOUT_S):
        await reader.until("curl")
        for track in CATALOG:
            assert any(line.startswith(f"{track.video_id}  ") for line in reader.lines)
        async with httpx.AsyncClient(base_url=url) as client:
            video_id = CATALOG[0].video_id
            stream = await client.get("/stream", params={"v": video_id})
            first = await client.get(
                "/proxy", params={"v": video_id}, headers={"Range": "bytes=0-99"}
            )
    assert stream.status_code == 200
    assert stream.json()["videoId"] == video_id
    assert first.status_code == 206
    assert len(first.content) == 100
    assert first.content.startswith(b"RIFF")


async def test_sigterm_drains_open_stream_then_exits_0(
    demo: tuple[trio.Process, str, LineReader],
) -> None:
    process, url, _ = demo
    video_id = CATALOG[1].video_id
    received = 0
    with trio.fail_after(PROCESS_TIMEOUT_S):
        async with (
            httpx.AsyncClient(base_url=url) as client,
            client.stream("GET", "/proxy", params={"v": video_id}) as response,
        ):
            expected = int(response.headers["content-length"])
            process.send_signal(signal.SIGTERM)
            # Read slowly, so most of the body is sent after the signal.
            async for chunk in response.aiter_raw(16 * 1024):
                received += len(chunk)
                await trio.sleep(0.005)
            still_running = process.returncode is None
        code = await process.wait()
    assert expected > 1_000_000
    assert received == expected
    assert still_running
    assert code == 0


async def test_hypercorn_runs_app_factory() -> None:
    port = free_port()
    process = await trio.lowlevel.open_process(
        [
            sys.executable,
            "-m",
            "hypercorn",
            "-k",
            "trio",
            "--bind",
            f"127.0.0.1:{port}",
            "voyo_trio:create_app()",
        ],
        env=child_env(),
    )
    try:
        with trio.fail_after(PROCESS_TIMEOUT_S):
            response = await _get_when_up(f"http://127.0.0.1:{port}/health")
        assert response.status_code == 200
        assert response.json()["status"] == "ok"
    finally:
        process.send_signal(signal.SIGINT)
        with trio.move_on_after(PROCESS_TIMEOUT_S):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _get_when_up(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        while True:
            try:
                return await client.get(url)
            except httpx.ConnectError:
                await trio.sleep(0.1)


async def test_sigterm_exits_despite_stalled_listener(
    quick_demo: tuple[trio.Process, str, LineReader],
) -> None:
    process, url, reader = quick_demo
    port = int(url.rsplit(":", 1)[1])
    video_id = CATALOG[6].video_id
    listener = trio.socket.socket()
    # A tiny receive window and no reads: the server's writes block.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    with listener, trio.fail_after(PROCESS_TIMEOUT_S):
        await listener.connect(("127.0.0.1", port))
        request = f"GET /proxy?v={video_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        await listener.send(request.encode())
        await reader.until("GET /proxy 200")
        process.send_signal(signal.SIGTERM)
        await reader.until("exiting without waiting")
        code = await process.wait()
    assert code == 0
