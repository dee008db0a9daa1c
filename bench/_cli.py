"""``python -m bench``: run the scenarios, print the tables, write the JSON.

Everything runs on 127.0.0.1: the stand-in, the relay, the proxies under
test and the load. Ctrl-C or SIGTERM stops every child before exiting.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import trio

from ._config import DEFAULT, PEERS, QUICK, SCENARIOS, Profile
from ._listeners import run_listeners
from ._machine import describe_machine
from ._media import bulk_host
from ._peers import PeerStatus, find_peer
from ._plot import plot_ttfb
from ._report import render_report
from ._targets import evaluate_targets
from ._throughput import run_throughput
from ._ttfb import run_ttfb

__all__ = ["main"]

logger = logging.getLogger("bench")

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results"
RESULTS_FILE = "results.json"
PLOT_FILE = "ttfb.png"


def _csv(kind: type, allowed: Sequence[str] | None = None) -> Any:
    def parse(raw: str) -> tuple[Any, ...]:
        items = tuple(kind(item.strip()) for item in raw.split(",") if item.strip())
        if allowed is not None and not set(items) <= set(allowed):
            raise argparse.ArgumentTypeError(
                f"invalid value {raw!r}: expected a comma list of {', '.join(allowed)}"
            )
        return items

    return parse


# Options that override one profile field: flag, parser, help text.
_OVERRIDES: tuple[tuple[str, Any, str], ...] = (
    ("--scenarios", _csv(str, SCENARIOS), "scenarios to run, a comma list"),
    ("--peers", _csv(str, PEERS), "peers to run, a comma list of voyo,node,nginx"),
    ("--rtt-ms", _csv(float), "relay round trips in ms, a comma list such as 20,0"),
    ("--ttfb-rounds", int, "timed requests per TTFB target"),
    ("--long-track-s", int, "length of the long track in seconds"),
    ("--throughput-rounds", int, "downloads per throughput target"),
    ("--listeners", _csv(int), "listener counts, a comma list such as 100,1000"),
    ("--listen-seconds", float, "seconds of audio each listener plays"),
    ("--rate-kbps", float, "listener bit rate in kbit/s"),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark voyo-trio against Node.js and nginx peers on loopback.",
    )
    parser.add_argument("--quick", action="store_true", help="tiny counts, ~1 min")
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="folder for results.json and the plot",
    )

    for flag, parse, text in _OVERRIDES:
        parser.add_argument(flag, type=parse, help=text)

    parser.add_argument(
        "--voyo-env",
        action="append",
        metavar="NAME=VALUE",
        help="extra VOYO_* setting for every voyo server, repeatable",
    )
    parser.add_argument(
        "--keep-run-dir", action="store_true", help="keep configs and child logs"
    )
    parser.add_argument("--verbose", action="store_true", help="log debug messages")
    return parser


def _profile(args: argparse.Namespace) -> Profile:
    for item in args.voyo_env or ():
        name, separator, _ = item.partition("=")
        if not separator or not name.startswith("VOYO_"):
            _parser().error(f"invalid --voyo-env {item!r}: expected VOYO_NAME=VALUE")
    profile = QUICK if args.quick else DEFAULT
    overrides = {
        "scenarios": args.scenarios,
        "peers": args.peers,
        "rtts_ms": args.rtt_ms,
        "ttfb_rounds": args.ttfb_rounds,
        "long_track_s": args.long_track_s,
        "throughput_rounds": args.throughput_rounds,
        "listener_counts": args.listeners,
        "listen_seconds": args.listen_seconds,
        "listen_rate_bps": None if args.rate_kbps is None else args.rate_kbps * 1000,
        "voyo_env": None if args.voyo_env is None else tuple(args.voyo_env),
    }
    return profile.replace(**{k: v for k, v in overrides.items() if v is not None})


def _peer_statuses(profile: Profile) -> dict[str, PeerStatus]:
    statuses = {"voyo": PeerStatus("voyo", sys.executable, _voyo_version(), None)}
    for name in ("node", "nginx"):
        statuses[name] = find_peer(name)
    return {name: statuses[name] for name in PEERS if name in profile.peers}


def _voyo_version() -> str:
    return f"voyo-trio {metadata.version('voyo-trio')}"


async def run_all(profile: Profile, run_dir: Path, output: Path) -> dict[str, Any]:
    """Run the selected scenarios and return every figure."""
    peers = _peer_statuses(profile)
    skipped = {name: s.reason for name, s in peers.items() if s.reason is not None}
    for name, reason in skipped.items():
        logger.warning("skipping peer %s: %s", name, reason)
    results: dict[str, Any] = {
        "schema": 1,
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(
            timespec="seconds"
        ),
        "profile": _profile_json(profile),
        "machine": describe_machine(peers),
        "skipped": skipped,
        "ttfb": None,
        "throughput": None,
        "listeners": None,
        "plot": None,
    }
    if "ttfb" in profile.scenarios:
        logger.info(
            "scenario ttfb: %d rounds at RTT %s ms",
            profile.ttfb_rounds,
            profile.rtts_ms,
        )
        results["ttfb"] = await run_ttfb(profile, run_dir, peers)
        plot = plot_ttfb(results["ttfb"], output / PLOT_FILE)
        results["plot"] = None if plot is None else str(plot)
    bulk_scenarios = {"throughput", "listeners"} & set(profile.scenarios)
    if bulk_scenarios:
        await _run_bulk(profile, run_dir, peers, results)
    results["targets"] = evaluate_targets(results)
    return results


async def _run_bulk(
    profile: Profile,
    run_dir: Path,
    peers: dict[str, PeerStatus],
    results: dict[str, Any],
) -> None:
    nginx = peers.get("nginx") or find_peer("nginx")
    if nginx.path is None:
        logger.warning("nginx is absent, so the stand-in serves the long track")
    async with bulk_host(run_dir, profile.long_track_s, nginx.path) as host:
        if "throughput" in profile.scenarios:
            logger.info("scenario throughput: %d rounds", profile.throughput_rounds)
            results["throughput"] = await run_throughput(profile, run_dir, peers, host)
        if "listeners" in profile.scenarios:
            logger.info("scenario listeners: N=%s", profile.listener_counts)
            results["listeners"] = await run_listeners(profile, run_dir, peers, host)


def _profile_json(profile: Profile) -> dict[str, Any]:
    return dataclasses.asdict(profile)


@dataclasses.dataclass
class _Interrupt:
    """The signal that stopped the run, if one did."""

    signal_number: int | None = None


async def _run_until_signal(
    profile: Profile, run_dir: Path, output: Path, interrupt: _Interrupt
) -> dict[str, Any] | None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_cancel_on_signal, nursery.cancel_scope, interrupt)
        results = await run_all(profile, run_dir, output)
        nursery.cancel_scope.cancel()
        return results
    # Only a signal cancels the nursery before run_all returns.
    return None


async def _cancel_on_signal(scope: trio.CancelScope, interrupt: _Interrupt) -> None:
    # Ctrl-C in a terminal also reaches the children, which then close their
    # connections, so requests may fail before this task runs. main() reports
    # the signal and not those failures.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signal_number in signals:
            logger.warning(
                "received %s; stopping every child", signal.Signals(signal_number).name
            )
            interrupt.signal_number = signal_number
            scope.cancel()
            return


def _report_interrupt(signal_number: int) -> int:
    print("interrupted; every child process was stopped", file=sys.stderr)
    return 128 + signal_number


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpcore", "voyo_trio", "hpack"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    profile = _profile(args)

    args.output.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="voyo-bench-"))
    # nginx workers run as an unprivileged user when started as root.
    run_dir.chmod(0o755)
    interrupt = _Interrupt()
    try:
        results = trio.run(_run_until_signal, profile, run_dir, args.output, interrupt)
    except Exception as error:
        if interrupt.signal_number is not None:
            return _report_interrupt(interrupt.signal_number)
        cause = _first_leaf(error)
        logger.error("benchmark failed: %s: %s", type(cause).__name__, cause)
        logger.debug("traceback of the failure", exc_info=error)
        if not args.verbose:
            logger.error("run again with --verbose for the traceback")
        return 1
    finally:
        if args.keep_run_dir:
            logger.info("configs and logs kept in %s", run_dir)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)

    if results is None or interrupt.signal_number is not None:
        return _report_interrupt(interrupt.signal_number or signal.SIGINT)
    path = args.output / RESULTS_FILE
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(render_report(results))
    print(
        f"results: {path}" + (f", plot: {results['plot']}" if results["plot"] else "")
    )
    return 0
