"""The ``checkpointd`` command line.

checkpointd check FILE                           lint a config; exit 0 ok, 1 invalid
checkpointd run -c FILE                          run the daemon
checkpointd run-once -c FILE NAME [--param K=V]  run one checkpoint now; exit 0/1/2
checkpointd history -c FILE [--checkpoint N] [--status S] [--limit N]
                                                 past runs from the state dir

Each command is two functions: ``_add_NAME(subparsers)`` declares its
arguments and sets ``handler``, and the handler takes the parsed arguments and
returns the exit code. A new command is one more pair and one more entry in
``COMMANDS``. Heavy modules (polars, the store, the daemon) are imported inside
the handlers that need them, so ``checkpointd check`` and ``--help`` stay quick.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from checkpointd.checkpoints.result import Status
from checkpointd.cli.actions import add_actions, add_deliveries
from checkpointd.cli.render import render_history, render_result
from checkpointd.errors import CheckpointdError, ConfigError, StateDirInUseError
from checkpointd.progress import Progress

if TYPE_CHECKING:
    from checkpointd.checkpoints.result import CheckpointResult
    from checkpointd.config.models import CheckpointConfig, Config
    from checkpointd.events import TriggerEvent

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # what a shell reports for a command killed by SIGPIPE

Handler = Callable[[argparse.Namespace], int]
Subparsers = Any  # argparse's _SubParsersAction is private


# ---------------------------------------------------------------- commands


def _add_check(sub: Subparsers) -> None:
    check = sub.add_parser("check", help="validate a config file (exit 1 when invalid)")
    check.add_argument("file", type=Path)
    check.set_defaults(handler=lambda args: cmd_check(args.file, sys.stdout, sys.stderr))


def cmd_check(path: Path, out: TextIO, err: TextIO) -> int:
    """Print a one-line summary of a valid config (exit 0) or every error in it (exit 1)."""
    from checkpointd.config import summarize

    try:
        config = load_config(path)
    except ConfigError as exc:
        print(exc, file=err)
        return EXIT_FAILURE
    print(summarize(config), file=out)
    return EXIT_OK


def load_config(path: Path) -> Config:
    """The config at ``path`` (pydantic is imported here, not for ``--help``)."""
    from checkpointd.config import load_config as load

    return load(path)


def _add_run(sub: Subparsers) -> None:
    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("-c", "--config", type=Path, required=True)
    run.add_argument("--loop", choices=["uvloop", "asyncio"], help="override daemon.loop")
    run.add_argument(
        "--insecure",
        action="store_true",
        help="allow listening on a non-loopback address without a token",
    )
    run.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM/SIGINT."""
    from checkpointd.daemon.main import run_daemon_cli

    return run_daemon_cli(load_config(args.config), loop=args.loop, insecure=args.insecure)


def _add_run_once(sub: Subparsers) -> None:
    once = sub.add_parser(
        "run-once",
        help="run one checkpoint now and print its result",
        description="Exit 0 on success or warning, 1 on failure, 2 on error, timeout "
        "or an unknown checkpoint.",
    )
    once.add_argument("-c", "--config", type=Path, required=True)
    once.add_argument("name")
    once.add_argument("--output", choices=["table", "json"], default="table")
    once.add_argument(
        "--param",
        dest="params",
        action="append",
        type=_param,
        default=[],
        metavar="NAME=VALUE",
        help="fill {trigger.NAME} in the data source, e.g. --param path=incoming/a.csv",
    )
    once.add_argument(
        "--no-store", action="store_true", help="do not record the run in the state dir"
    )
    once.set_defaults(handler=cmd_run_once)


def _param(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, found {text!r}")
    return name.strip(), value


def cmd_run_once(args: argparse.Namespace) -> int:
    """Run one checkpoint, record it (unless told not to), print it; exit by its status."""
    config = load_config(args.config)
    try:
        cp_config = config.checkpoint(args.name)
    except KeyError as exc:
        print(f"checkpointd: {exc.args[0]}", file=sys.stderr)
        return EXIT_ERROR
    event = _manual_event(dict(args.params)) if args.params else None
    result = asyncio.run(_run_once(config, cp_config, event, record=not args.no_store))
    if args.output == "json":
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(render_result(result))
    if result.status is Status.ERROR and event is None and "{trigger." in (result.error or ""):
        print(
            "hint: fill placeholders with --param NAME=VALUE, e.g. --param path=FILE",
            file=sys.stderr,
        )
    return result.status.exit_code


def _manual_event(params: dict[str, str]) -> TriggerEvent:
    from checkpointd.events import TriggerEvent
    from checkpointd.ids import uuid7

    return TriggerEvent(
        type="manual", key=f"run-once:{uuid7()}", fired_at=datetime.now(UTC), params=params
    )


async def _run_once(
    config: Config, cp_config: CheckpointConfig, event: TriggerEvent | None, *, record: bool
) -> CheckpointResult:
    from checkpointd.checkpoints.checkpoint import Checkpoint
    from checkpointd.store.sqlite.store import SqliteStore

    name = cp_config.name
    store: SqliteStore | None = None
    if record:
        try:
            store = await SqliteStore.open(config.daemon.state_dir)
        except StateDirInUseError as exc:
            who = f"pid {exc.pid}" if exc.pid is not None else "another process"
            print(
                f"note: not recording this run: the state dir {exc.state_dir} is in use by "
                f"{who} (a running daemon?). To have it recorded, run it through the daemon: "
                f"POST /api/v1/checkpoints/{name}/runs",
                file=sys.stderr,
            )
    try:
        progress = Progress(f"running {name}", stream=sys.stderr)
        checkpoint = Checkpoint(cp_config, sleep=_retry_sleep(progress, cp_config))
        async with progress:
            result = await checkpoint.run_async(event)
        if store is not None:
            # The event was never journaled, so none is passed; the result carries its trigger.
            await store.save_results([(result, None)])
        return result
    finally:
        if store is not None:
            await store.close()


def _retry_sleep(
    progress: Progress,
    cp_config: CheckpointConfig,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Callable[[float], Awaitable[None]]:
    """The checkpoint's wait between attempts, telling the spinner what it waits for."""
    attempts = cp_config.retries.max_retries + 1
    failed = 0

    async def wait(delay: float) -> None:
        nonlocal failed
        failed += 1
        progress.phase = f"attempt {failed} of {attempts} failed, retrying in {delay:.1f}s"
        await sleep(delay)
        progress.phase = f"attempt {failed + 1} of {attempts}"

    return wait


def _add_history(sub: Subparsers) -> None:
    history = sub.add_parser("history", help="list recorded runs, newest first")
    history.add_argument("-c", "--config", type=Path, required=True)
    history.add_argument("--checkpoint", help="only this checkpoint's runs")
    history.add_argument("--status", choices=[s.value for s in Status], help="only this status")
    history.add_argument("--limit", type=_positive_int, default=20, help="at most N runs")
    history.add_argument("--output", choices=["table", "json"], default="table")
    history.set_defaults(handler=cmd_history)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, found {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, found {value}")
    return value


def cmd_history(args: argparse.Namespace) -> int:
    """Print recorded runs, newest first (works beside a running daemon)."""
    from checkpointd.store.sqlite.readonly import read_history

    config = load_config(args.config)
    results = read_history(
        config.daemon.state_dir, checkpoint=args.checkpoint, status=args.status, limit=args.limit
    )
    if args.output == "json":
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        print(render_history(results))
    return EXIT_OK


# ---------------------------------------------------------------- wiring

#: One entry per subcommand, in ``--help`` order.
COMMANDS: list[Callable[[Subparsers], None]] = [
    _add_check,
    _add_run,
    _add_run_once,
    _add_history,
    add_deliveries,
    add_actions,
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from checkpointd import __version__

    parser = argparse.ArgumentParser(
        prog="checkpointd",
        description="Watch data: run data-quality checkpoints when triggers fire.",
    )
    parser.add_argument("--version", action="version", version=f"checkpointd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit code."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_ERROR
    except CheckpointdError as exc:
        print(f"checkpointd: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`checkpointd history | head`). Point stdout at /dev/null so
        # the interpreter's final flush does not print a second traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    raise SystemExit(main())
