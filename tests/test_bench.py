"""Tests of the benchmark harness: its parts, and one whole ``--quick`` run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from bench._load import Playback
from bench._relay import LatencyRelay
from bench._stats import percentile
from bench._targets import evaluate_targets
from voyo_trio.standin import CATALOG, StandIn, Track

REPO_ROOT = Path(__file__).resolve().parent.parent
# A quick run takes about a minute on two cores; this bounds a hung one.
QUICK_RUN_TIMEOUT_S = 300
STEP_TIMEOUT_S = 10
LONG_TRACK = Track("benchTest01", "Long Test Track", "voyo bench", 120)
_SOURCE_URL = re.compile(r'<source src="([^"]+)"')


async def _echo(stream: trio.SocketStream) -> None:
    async with stream:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)
        await stream.send_eof()


async def _serve_echo(*, task_status: trio.TaskStatus[int]) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, _echo, listeners)
            task_status.started(listeners[0].socket.getsockname()[1])
    finally:
        with trio.CancelScope(shield=True):
            for listener in listeners:
                await trio.aclose_forcefully(listener)


async def _start_echo_relay(nursery: trio.Nursery, rtt_s: float) -> LatencyRelay:
    echo_port = await nursery.start(_serve_echo)
    relay = LatencyRelay("127.0.0.1", echo_port, rtt_s=rtt_s)
    await nursery.start(relay.serve)
    return relay


async def _round_trip(port: int, payload: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(payload)
        await stream.send_eof()
        received = bytearray()
        while data := await stream.receive_some(65536):
            received += data
    return bytes(received)


async def test_relay_keeps_bytes_and_order(nursery: trio.Nursery) -> None:
    relay = await _start_echo_relay(nursery, rtt_s=0.002)
    assert relay.port is not None
    payloads = [bytes([index]) * (300_000 + index) for index in range(4)]
    echoed: dict[int, bytes] = {}

    async def one(index: int) -> None:
        echoed[index] = await _round_trip(relay.port or 0, payloads[index])

    with trio.fail_after(STEP_TIMEOUT_S):
        async with trio.open_nursery() as clients:
            for index in range(len(payloads)):
                clients.start_soon(one, index)
    for index, payload in enumerate(payloads):
        assert echoed[index] == payload
    assert relay.connections_accepted == len(payloads)


async def test_relay_passes_half_close(nursery: trio.Nursery) -> None:
    relay = await _start_echo_relay(nursery, rtt_s=0.0)
    with trio.fail_after(STEP_TIMEOUT_S):
        # The echo server sends EOF after the client's EOF, which ends _round_trip.
        assert await _round_trip(relay.port or 0, b"") == b""


def test_relay_rejects_negative_rtt() -> None:
    with pytest.raises(ValueError, match="rtt_s"):
        LatencyRelay("127.0.0.1", 1, rtt_s=-0.001)


async def test_standin_serves_extra_catalog_track(nursery: trio.Nursery) -> None:
    standin = StandIn(catalog=(*CATALOG, LONG_TRACK))
    await nursery.start(standin.serve)
    context = httpx.create_ssl_context()
    standin.ca.configure_trust(context)
    url = standin.media_url(LONG_TRACK.video_id, "low")
    async with httpx.AsyncClient(verify=context, trust_env=False) as client:
        with trio.fail_after(STEP_TIMEOUT_S):
            response = await client.get(url)
    assert response.status_code == 200
    assert response.content == standin.audio_bytes(LONG_TRACK.video_id, "low")
    # 8,000 one-byte samples a second for 120 s, and a 44-byte WAV header.
    assert len(response.content) == 8000 * 120 + 44


async def test_standin_pages_use_media_base_url(nursery: trio.Nursery) -> None:
    relay_origin = "https://127.0.0.1:9"
    standin = StandIn(media_base_url=relay_origin)
    await nursery.start(standin.serve)
    context = httpx.create_ssl_context()
    standin.ca.configure_trust(context)
    page_url = standin.watch_url_template.format(id=CATALOG[0].video_id)
    async with httpx.AsyncClient(verify=context, trust_env=False) as client:
        with trio.fail_after(STEP_TIMEOUT_S):
            page = (await client.get(page_url)).text
    sources = _SOURCE_URL.findall(page)
    assert len(sources) == 3
    assert all(source.startswith(f"{relay_origin}/media/") for source in sources)
    assert standin.media_url(CATALOG[0].video_id, "high").startswith(relay_origin)


def test_standin_rejects_duplicate_catalog_ids() -> None:
    with pytest.raises(ValueError, match="distinct video ids"):
        StandIn(catalog=(CATALOG[0], CATALOG[0]))


def test_playback_counts_stall_until_data() -> None:
    playback = Playback(rate=10.0, prebuffer_bytes=10.0, target_bytes=100.0)
    playback.receive(0.0, 10)
    assert playback.first_byte_at == 0.0
    assert playback.playing_since == 0.0
    # 10 bytes last 1 s, so the next second is a stall that ends at 2.0.
    playback.receive(2.0, 50)
    assert playback.longest_stall_s == pytest.approx(1.0)
    playback.advance(5.0)
    assert playback.played == pytest.approx(40.0)
    assert playback.total_stall_s == pytest.approx(1.0)


def test_playback_waits_for_prebuffer() -> None:
    playback = Playback(rate=10.0, prebuffer_bytes=20.0, target_bytes=100.0)
    playback.receive(0.0, 10)
    playback.advance(3.0)
    assert playback.playing_since is None
    assert playback.played == 0.0
    assert playback.total_stall_s == 0.0


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == pytest.approx(2.5)
    assert percentile([5.0], 0.99) == 5.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)


def test_targets_without_results_are_not_run() -> None:
    goals = evaluate_targets({})
    assert len(goals) == 7
    assert all(goal["met"] is None for goal in goals)


def _run_quick(output: Path) -> subprocess.CompletedProcess[str]:
    # A new session lets the whole process group be killed on a timeout, so
    # no server of the run outlives the test.
    process = subprocess.Popen(
        [sys.executable, "-m", "bench", "--quick", "--output", str(output)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=QUICK_RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"python -m bench --quick timed out:\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_quick_run_writes_results(tmp_path: Path) -> None:
    result = _run_quick(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Time to first byte" in result.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    for key in ("machine", "profile", "ttfb", "throughput", "listeners", "targets"):
        assert results[key], key
    present = {"voyo"} | {
        name for name in ("node", "nginx") if name not in results["skipped"]
    }
    ttfb_targets = {row["target"] for row in results["ttfb"]["rows"]}
    assert ttfb_targets == present | {"direct", "direct-no-relay"}
    for row in results["ttfb"]["rows"]:
        assert row["samples"] == results["profile"]["ttfb_rounds"]
    throughput_targets = {row["target"] for row in results["throughput"]["rows"]}
    assert throughput_targets == present | {"direct"}
    listener_rows = results["listeners"]["rows"]
    assert {row["target"] for row in listener_rows} == present
    for row in listener_rows:
        assert row["listeners"] == row["count"]
        assert row["errors"] == {}, (row["target"], row["count"], row["errors"])
    assert len(results["targets"]) == 7
    assert results["machine"]["cpu_model"]
