"""Child processes of the harness: start, wait until ready, measure, stop.

Every child writes its output to a log file in the run folder. A child is
stopped with SIGTERM, then SIGKILL after a grace period, also when the
harness is cancelled by Ctrl-C, so no server outlives a run.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import trio

__all__ = [
    "Child",
    "ResourceMonitor",
    "bench_env",
    "free_port",
    "run_child",
    "wait_until_ready",
]

logger = logging.getLogger(__name__)

STOP_GRACE_S = 5.0
_READY_POLL_S = 0.05
# Proxy variables would send the harness's own clients elsewhere, and
# inherited VOYO_* variables would change the server under test.
_DROPPED_PREFIXES = ("VOYO_",)
_DROPPED_NAMES = frozenset(
    {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "yt_api_key"}
)


def bench_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return this process's environment without proxy or VOYO_* variables."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_DROPPED_PREFIXES) and name.lower() not in _DROPPED_NAMES
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    # NOTE: another program may take the port before the child binds it;
    # the child then fails to start and the run stops with its log.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Child:
    """A running child process and the log file that contains its output."""

    name: str
    process: trio.Process
    log_path: Path

    def processes(self) -> list[psutil.Process]:
        """Return the child and its descendants, such as nginx's workers."""
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def log_tail(self, lines: int = 20) -> str:
        """Return the last lines of the child's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@asynccontextmanager
async def run_child(
    name: str,
    argv: Sequence[str],
    *,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> AsyncIterator[Child]:
    """Run a child process for the duration of the block, then stop it."""
    log_path = _unused_path(log_dir, name)
    with log_path.open("wb") as log:
        process = await trio.lowlevel.open_process(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else bench_env(),
            cwd=cwd,
        )
        logger.debug("started %s pid=%d: %s", name, process.pid, " ".join(argv))
        try:
            yield Child(name, process, log_path)
        finally:
            with trio.CancelScope(shield=True):
                await stop_process(name, process)


def _unused_path(log_dir: Path, name: str) -> Path:
    path, number = log_dir / f"{name}.log", 1
    while path.exists():
        number += 1
        path = log_dir / f"{name}-{number}.log"
    return path


async def stop_process(name: str, process: trio.Process) -> None:
    """Send SIGTERM, wait up to STOP_GRACE_S, then SIGKILL."""
    if process.returncode is None:
        process.terminate()
        with trio.move_on_after(STOP_GRACE_S):
            await process.wait()
    if process.returncode is None:
        logger.warning("%s pid=%d ignored SIGTERM; killing it", name, process.pid)
        process.kill()
        await process.wait()
    logger.debug("%s pid=%d exited with %s", name, process.pid, process.returncode)


async def wait_until_ready(child: Child, url: str, timeout_s: float = 30.0) -> None:
    """Poll ``url`` until it returns 200; raise if the child exits or times out."""
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
        with trio.move_on_after(timeout_s):
            while True:
                if child.process.returncode is not None:
                    raise RuntimeError(
                        f"{child.name} exited with {child.process.returncode} "
                        f"before it was ready:\n{child.log_tail()}"
                    )
                try:
                    response = await client.get(url)
                    if response.status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(_READY_POLL_S)
    raise RuntimeError(
        f"{child.name} was not ready at {url} after {timeout_s:g} s:\n"
        f"{child.log_tail()}"
    )


@dataclass
class ResourceMonitor:
    """CPU seconds and peak RSS of a set of processes over one measurement.

    CPU is user plus system time, summed over the processes. RSS is summed
    over the processes at each sample, and the peak is the largest sum seen.
    """

    processes: list[psutil.Process]
    interval_s: float = 0.1
    peak_rss_bytes: int = 0
    _cpu_start: float = field(default=0.0, init=False)

    def cpu_seconds(self) -> float:
        """Return CPU seconds used since :meth:`start`."""
        return _cpu_total(self.processes) - self._cpu_start

    def start(self) -> None:
        """Set the CPU baseline and the peak RSS to the current values."""
        self._cpu_start = _cpu_total(self.processes)
        self.peak_rss_bytes = _rss_total(self.processes)

    async def sample_forever(self) -> None:
        """Update the peak RSS every ``interval_s`` until cancelled."""
        while True:
            self.peak_rss_bytes = max(self.peak_rss_bytes, _rss_total(self.processes))
            await trio.sleep(self.interval_s)


def _cpu_total(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _rss_total(processes: list[psutil.Process]) -> int:
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total
