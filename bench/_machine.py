"""A description of the machine and software that produced a run."""

from __future__ import annotations

import os
import platform
import ssl
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from ._peers import PeerStatus

__all__ = ["describe_machine"]

_PACKAGES = (
    "voyo-trio",
    "trio",
    "hypercorn",
    "quart",
    "quart-trio",
    "httpx",
    "httpcore",
    "h11",
    "yt-dlp",
    "psutil",
    "matplotlib",
)


def describe_machine(peers: dict[str, PeerStatus]) -> dict[str, Any]:
    """Return CPU, memory, OS, Python, package and peer versions."""
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "openssl": ssl.OPENSSL_VERSION,
        "packages": {name: _version(name) for name in _PACKAGES},
        "peers": {name: status.version for name, status in peers.items()},
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
