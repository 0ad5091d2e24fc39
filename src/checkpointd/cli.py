"""The ``checkpointd`` command line.

checkpointd check FILE                         lint a config; exit 0 ok, 1 invalid
checkpointd run -c FILE                        run the daemon
checkpointd run-once -c FILE NAME              run one checkpoint now; exit 0/1/2
checkpointd history -c FILE [--checkpoint N]   past runs from the state dir
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from checkpointd.checkpoints.checkpoint import Checkpoint
from checkpointd.checkpoints.result import CheckpointResult
from checkpointd.config import Config, load_config, summarize
from checkpointd.errors import CheckpointdError, ConfigError, StateDirInUseError
from checkpointd.progress import Progress
from checkpointd.render import render_history, render_result

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="checkpointd",
        description="Watch data: run data-quality checkpoints when triggers fire.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="validate a config file (exit 1 when invalid)")
    check.add_argument("file", type=Path)

    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("-c", "--config", type=Path, required=True)
    run.add_argument("--loop", choices=["uvloop", "asyncio"], help="override daemon.loop")
    run.add_argument(
        "--insecure",
        action="store_true",
        help="allow listening on a non-loopback address without a token",
    )

    once = sub.add_parser("run-once", help="run one checkpoint now and print its result")
    once.add_argument("-c", "--config", type=Path, required=True)
    once.add_argument("name")
    once.add_argument("--output", choices=["table", "json"], default="table")
    once.add_argument(
        "--no-store", action="store_true", help="do not record the run in the state dir"
    )

    history = sub.add_parser("history", help="list recorded runs, newest first")
    history.add_argument("-c", "--config", type=Path, required=True)
    history.add_argument("--checkpoint")
    history.add_argument("--status")
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--output", choices=["table", "json"], default="table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "check":
            return cmd_check(args.file, sys.stdout, sys.stderr)
        config = load_config(args.config)
        if args.command == "run-once":
            return cmd_run_once(config, args.name, args.output, not args.no_store)
        if args.command == "history":
            return cmd_history(config, args.checkpoint, args.status, args.limit, args.output)
        if args.command == "run":
            from checkpointd.daemon.main import run_daemon_cli

            return run_daemon_cli(config, loop=args.loop, insecure=args.insecure)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILURE if args.command == "check" else EXIT_ERROR
    except CheckpointdError as exc:
        print(f"checkpointd: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command}")  # argparse guarantees a command


def cmd_check(path: Path, out: TextIO, err: TextIO) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(exc, file=err)
        return EXIT_FAILURE
    print(summarize(config), file=out)
    return EXIT_OK


def cmd_run_once(config: Config, name: str, output: str, record: bool) -> int:
    try:
        cp_config = config.checkpoint(name)
    except KeyError as exc:
        print(f"checkpointd: {exc.args[0]}", file=sys.stderr)
        return EXIT_ERROR
    result = asyncio.run(_run_once(config, Checkpoint(cp_config), record))
    if output == "json":
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(render_result(result))
    return result.status.exit_code


async def _run_once(config: Config, checkpoint: Checkpoint, record: bool) -> CheckpointResult:
    from checkpointd.daemon.store import Store

    store: Store | None = None
    if record:
        try:
            store = await Store.open(config.daemon.state_dir)
        except StateDirInUseError as exc:
            print(
                f"note: not recording this run: {exc}. Trigger it through the daemon instead "
                f"(POST /api/v1/checkpoints/{checkpoint.name}/runs).",
                file=sys.stderr,
            )
    try:
        async with Progress(f"running {checkpoint.name}", stream=sys.stderr):
            result = await checkpoint.run_async()
        if store is not None:
            await store.save_results([(result, None)])
        return result
    finally:
        if store is not None:
            await store.close()


def cmd_history(
    config: Config, checkpoint: str | None, status: str | None, limit: int, output: str
) -> int:
    from checkpointd.daemon.history import read_history

    results = read_history(
        config.daemon.state_dir, checkpoint=checkpoint, status=status, limit=limit
    )
    if output == "json":
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        print(render_history(results))
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
