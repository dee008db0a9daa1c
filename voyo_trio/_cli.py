"""The ``voyo-trio`` command: ``serve`` the API, or run the offline ``demo``."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from ._library import LibraryError
from ._server import serve, wait_for_signal
from ._settings import Settings, SettingsError
from .standin import CATALOG, StandIn, Track

__all__ = ["main", "standin_settings"]

logger = logging.getLogger("voyo_trio")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voyo-trio",
        description="Music streaming backend on Trio. Settings come from VOYO_* "
        "environment variables; the options below override a few of them.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="serve the API against YouTube")
    demo_parser = commands.add_parser(
        "demo", help="serve the API against a local stand-in for YouTube"
    )
    for sub in (serve_parser, demo_parser):
        sub.add_argument("--host", help="address to bind (VOYO_HOST)")
        sub.add_argument("--port", type=int, help="TCP port to bind (VOYO_PORT)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings_from(args)
    except SettingsError as error:
        print(f"voyo-trio: {error}", file=sys.stderr)
        return 2
    _configure_logging(settings.log_level)
    runner = _run_demo if args.command == "demo" else _run_serve
    code = 0
    try:
        trio.run(runner, settings)
    except* LibraryError as group:
        print(f"voyo-trio: {_first_error(group)}", file=sys.stderr)
        code = 2
    except* OSError as group:
        # Binding failed: the address is in use, or the host does not resolve.
        failure = _first_error(group)
        reason = getattr(failure, "strerror", None) or failure
        where = f"{settings.host}:{settings.port}"
        print(f"voyo-trio: cannot listen on {where}: {reason}", file=sys.stderr)
        code = 1
    return code


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _settings_from(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    overrides = {name: getattr(args, name) for name in ("host", "port")}
    return settings.replace(**{k: v for k, v in overrides.items() if v is not None})


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


async def _run_serve(settings: Settings) -> None:
    await serve(settings, shutdown_trigger=wait_for_signal)


def standin_settings(
    settings: Settings, standin: StandIn, ca_file: Path, **changes: Any
) -> Settings:
    """Point ``settings`` at a running stand-in whose CA is in ``ca_file``."""
    return settings.replace(
        watch_url_template=standin.watch_url_template,
        media_hosts=("127.0.0.1",),
        upstream_ca_file=ca_file,
        innertube_base_url=standin.base_url,
        thumbnail_base_url=standin.base_url,
        # Offline, a yt-dlp search could only fail.
        search_fallback=False,
        **changes,
    )


async def _run_demo(settings: Settings) -> None:
    standin = StandIn()
    with tempfile.TemporaryDirectory(prefix="voyo-demo-") as folder:
        async with trio.open_nursery() as nursery:
            await nursery.start(standin.serve)
            ca_file = standin.write_ca_pem(Path(folder) / "standin-ca.pem")
            demo_settings = standin_settings(
                settings, standin, ca_file, boost_downloads=True
            )

            async def serve_then_stop(task_status: Any) -> None:
                await serve(
                    demo_settings,
                    shutdown_trigger=wait_for_signal,
                    task_status=task_status,
                )
                # The server has shut down, so the stand-in can stop too.
                nursery.cancel_scope.cancel()

            binds = await nursery.start(serve_then_stop)
            _print_demo(binds[0], CATALOG)


def _print_demo(server_url: str, catalog: Sequence[Track]) -> None:
    lines = [f"voyo-trio demo serving on {server_url} (stand-in for YouTube)", ""]
    for track in catalog:
        lines.append(f"{track.video_id}  {track.artist} - {track.title}")
    first = catalog[0].video_id
    lines += [
        "",
        f"curl -s '{server_url}/stream?v={first}'",
        f"curl -s -H 'Range: bytes=0-99' '{server_url}/proxy?v={first}' | xxd | head",
        f"curl -s '{server_url}/api/search?q={catalog[0].title.split()[0]}'",
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)
