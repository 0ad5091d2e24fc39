"""``checkpointd deliveries`` and ``checkpointd actions test``.

checkpointd deliveries -c FILE [--status pending|delivered|dead] [--checkpoint N]
                                               the outbox, newest first
checkpointd deliveries retry -c FILE ID... | --all-dead
                                               requeue dead deliveries
checkpointd actions test -c FILE NAME --status failure [--previous STATUS] [--send]
                                               which actions fire, and their payloads

Listing reads the state dir directly (beside a running daemon, like
``history``). Retrying writes: with no daemon running it updates the state
dir itself (the next start delivers); when a daemon holds the state dir it
asks that daemon over its HTTP API (``POST /api/v1/deliveries/retry``), with
the configured token.

Registered in ``cli.COMMANDS`` as :func:`add_deliveries` and :func:`add_actions`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from checkpointd.checkpoints.result import Status
from checkpointd.errors import CheckpointdError, StateDirInUseError

if TYPE_CHECKING:
    from checkpointd.actions.dryrun import DryRunItem
    from checkpointd.actions.outbox import DeliveryStatus, OutboxEntry
    from checkpointd.config.models import Config

__all__ = ["add_actions", "add_deliveries", "cmd_actions_test", "cmd_deliveries"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_ERROR = 2
Subparsers = Any  # argparse's _SubParsersAction is private

_DELIVERY_STATUSES = ("pending", "delivered", "dead")
_RESULT_STATUSES = [s.value for s in Status if s not in (Status.SKIPPED, Status.CANCELLED)]


def _load(path: Path) -> Config:
    from checkpointd.config import load_config

    return load_config(path)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, found {text!r}")
    return int(text)


# ---------------------------------------------------------------- deliveries


def add_deliveries(sub: Subparsers) -> None:
    """``checkpointd deliveries [retry]``."""
    parser = sub.add_parser(
        "deliveries",
        help="list notification deliveries (pending, delivered, dead); retry dead ones",
        description="List the action outbox, newest first. `deliveries retry` requeues dead "
        "deliveries.",
    )
    parser.add_argument("-c", "--config", type=Path)
    parser.add_argument("--status", choices=_DELIVERY_STATUSES, help="only this status")
    parser.add_argument("--checkpoint", help="only this checkpoint's deliveries")
    parser.add_argument("--limit", type=_positive_int, default=50, help="at most N deliveries")
    parser.add_argument("--output", choices=["table", "json"], default="table")
    parser.set_defaults(handler=cmd_deliveries, retry=False)
    retry_sub = parser.add_subparsers(dest="deliveries_command", metavar="[retry]")
    retry = retry_sub.add_parser("retry", help="requeue dead deliveries")
    retry.add_argument("-c", "--config", type=Path, default=argparse.SUPPRESS)
    retry.add_argument("ids", nargs="*", metavar="ID", help="delivery ids to requeue")
    retry.add_argument("--all-dead", action="store_true", help="requeue every dead delivery")
    retry.set_defaults(handler=cmd_deliveries_retry)


def _config_arg(args: argparse.Namespace) -> Path:
    path: Path | None = getattr(args, "config", None)
    if path is None:
        raise CheckpointdError("give the config file with -c FILE")
    return path


def cmd_deliveries(args: argparse.Namespace) -> int:
    """Print deliveries from the state dir (works beside a running daemon)."""
    config = _load(_config_arg(args))
    entries, counts = asyncio.run(
        read_deliveries(
            config.daemon.state_dir,
            status=args.status,
            checkpoint=args.checkpoint,
            limit=args.limit,
        )
    )
    if args.output == "json":
        print(json.dumps({"deliveries": [e.to_dict() for e in entries], "counts": counts},
                         indent=2))  # fmt: skip
    else:
        print(render_deliveries(entries, counts))
    return EXIT_OK


async def read_deliveries(
    state_dir: Path, *, status: str | None, checkpoint: str | None, limit: int
) -> tuple[list[OutboxEntry], dict[str, int]]:
    """Deliveries newest first and counts by status, read-only; empty when none were kept."""
    from checkpointd.store.sqlite.readonly import read_deliveries as read

    wanted = cast("DeliveryStatus | None", status)
    return await read(state_dir, status=wanted, checkpoint=checkpoint, limit=limit)


def render_deliveries(entries: list[OutboxEntry], counts: dict[str, int]) -> str:
    """A table of deliveries and a line of counts."""
    from checkpointd.cli.render import table

    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in _DELIVERY_STATUSES)
    if not entries:
        return f"no deliveries to show ({summary})"
    rows = [
        [
            e.id,
            e.status,
            e.action,
            e.run_status or "-",
            e.kind,
            e.attempts,
            e.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            _short(e.last_error or "", 60),
        ]
        for e in entries
    ]
    headers = ["ID", "STATUS", "ACTION", "RUN", "KIND", "TRIES", "UPDATED (UTC)", "LAST ERROR"]
    return f"{table(headers, rows)}\n{summary}"


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def cmd_deliveries_retry(args: argparse.Namespace) -> int:
    """Requeue dead deliveries: in the state dir, or through the daemon that holds it."""
    if bool(args.ids) == bool(args.all_dead):
        print("checkpointd: give delivery ids or --all-dead (not both)", file=sys.stderr)
        return EXIT_ERROR
    config = _load(_config_arg(args))
    ids: list[str] | None = None if args.all_dead else list(args.ids)
    try:
        requeued = asyncio.run(_retry_in_store(config, ids))
        where = "the state dir; the daemon delivers them when it starts"
    except StateDirInUseError:
        requeued = _retry_through_daemon(config, ids)
        where = "the running daemon"
    if ids is not None:
        missing = sorted(set(ids) - set(requeued))
        for delivery_id in missing:
            print(f"not requeued (unknown, or not dead): {delivery_id}", file=sys.stderr)
    print(f"requeued {len(requeued)} dead deliver{'y' if len(requeued) == 1 else 'ies'} "
          f"through {where}")  # fmt: skip
    for delivery_id in requeued:
        print(f"  {delivery_id}")
    return EXIT_OK if ids is None or len(requeued) == len(set(ids)) else EXIT_FAILURE


async def _retry_in_store(config: Config, ids: list[str] | None) -> list[str]:
    from checkpointd.store.sqlite.store import SqliteStore

    async with await SqliteStore.open(config.daemon.state_dir) as store:
        return await store.outbox.requeue(datetime.now(UTC), ids)


def _retry_through_daemon(config: Config, ids: list[str] | None) -> list[str]:
    http = config.daemon.http
    host = "127.0.0.1" if http.host in ("0.0.0.0", "", "::") else http.host
    if ":" in host:
        host = f"[{host}]"
    body = json.dumps({"all_dead": True} if ids is None else {"ids": ids}).encode()
    request = urllib.request.Request(
        f"http://{host}:{http.port}/api/v1/deliveries/retry",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    if http.token is not None:
        request.add_header("Authorization", f"Bearer {http.token.get_secret_value()}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise CheckpointdError(
            f"the running daemon refused the retry (HTTP {exc.code}): {detail}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise CheckpointdError(
            f"a daemon holds {config.daemon.state_dir} but its API at {host}:{http.port} "
            f"did not answer ({exc}); retry once it is up, or stop it and retry"
        ) from None
    return [str(i) for i in answer.get("requeued", [])]


# ---------------------------------------------------------------- actions test


def add_actions(sub: Subparsers) -> None:
    """``checkpointd actions test``."""
    parser = sub.add_parser("actions", help="try a checkpoint's actions without a run")
    actions_sub = parser.add_subparsers(dest="actions_command", required=True, metavar="test")
    test = actions_sub.add_parser(
        "test",
        help="show which actions fire for a status and what they would send",
        description="Decides every action of checkpoint NAME for a made-up run with --status "
        "(after --previous, for status_change and recoveries) and prints each payload with "
        "secrets masked. Nothing is sent unless --send is given. Exit 1 when --send fails.",
    )
    test.add_argument("-c", "--config", type=Path, required=True)
    test.add_argument("name", help="the checkpoint")
    test.add_argument("--status", choices=_RESULT_STATUSES, required=True)
    test.add_argument(
        "--previous",
        choices=_RESULT_STATUSES,
        help="the checkpoint's status before this run (default: none, a first run)",
    )
    test.add_argument("--send", action="store_true", help="really send the firing actions")
    test.add_argument("--output", choices=["text", "json"], default="text")
    test.set_defaults(handler=cmd_actions_test)


def cmd_actions_test(args: argparse.Namespace) -> int:
    """Print the decision and payload of every action; send them with ``--send``."""
    config = _load(args.config)
    try:
        cp = config.checkpoint(args.name)
    except KeyError as exc:
        print(f"checkpointd: {exc.args[0]}", file=sys.stderr)
        return EXIT_ERROR
    previous = Status(args.previous) if args.previous else None
    return asyncio.run(_actions_test(config, cp.name, Status(args.status), previous, args))


async def _actions_test(
    config: Config, name: str, status: Status, previous: Status | None, args: argparse.Namespace
) -> int:
    from checkpointd.actions.channel import ChannelContext
    from checkpointd.actions.dryrun import dry_run, send_once
    from checkpointd.actions.redact import Scrubber, secrets_of
    from checkpointd.actions.service import make_session

    session = None

    def get_session() -> Any:
        nonlocal session
        if session is None:
            session = make_session(config)
        return session

    context = ChannelContext(
        session=get_session, settings=config.daemon.actions, kafka=config.kafka
    )
    cp = config.checkpoint(name)
    items = dry_run(cp, status, previous, context)
    outcomes: dict[str, str | None] = {}
    # A python action's exception is user text: scrub it of every configured secret, as
    # the daemon's dispatcher does.
    scrub = Scrubber(
        secret
        for checkpoint in config.checkpoints
        for action in checkpoint.actions.items
        for secret in secrets_of(action, config.kafka)
    )
    try:
        if args.send:
            for item in items:
                if item.fires and item.problem is None:
                    action = cp.actions.items[item.spec.index]
                    why = await send_once(item, action.timeout.total_seconds() + 1)
                    outcomes[item.spec.name] = None if why is None else scrub(why)
    finally:
        for item in items:
            await item.channel.close()
        if session is not None:
            await session.close()
    if args.output == "json":
        print(json.dumps(_as_json(items, outcomes, status, previous), indent=2))
    else:
        print(_as_text(name, items, outcomes, status, previous, args.send))
    failed = [n for n, why in outcomes.items() if why is not None]
    problems = [i for i in items if i.problem is not None]
    return EXIT_FAILURE if failed or (args.send and problems) else EXIT_OK


def _as_json(
    items: list[DryRunItem],
    outcomes: dict[str, str | None],
    status: Status,
    previous: Status | None,
) -> dict[str, Any]:
    out = []
    for item in items:
        entry: dict[str, Any] = {
            "action": item.spec.name,
            "type": item.spec.action_type,
            "notify_on": item.spec.notify_on,
            "destination": item.channel.destination,
            "fires": item.fires,
            "kind": item.delivery.kind if item.delivery else None,
            "problem": item.problem,
        }
        if item.preview is not None:
            entry["request"] = {
                "method": item.preview.method,
                "headers": dict(item.preview.headers),
                "body": item.preview.body,
            }
        if item.spec.name in outcomes:
            why = outcomes[item.spec.name]
            entry["sent"] = why is None
            entry["error"] = why
        out.append(entry)
    return {"status": status.value, "previous": previous.value if previous else None,
            "actions": out}  # fmt: skip


def _as_text(
    name: str,
    items: list[DryRunItem],
    outcomes: dict[str, str | None],
    status: Status,
    previous: Status | None,
    sent: bool,
) -> str:
    was = previous.value if previous else "none (first run)"
    lines = [f"checkpoint {name}: a run ending {status.value}, previous status {was}"]
    if not items:
        lines.append("  (this checkpoint has no actions)")
    for item in items:
        spec = item.spec
        verdict = f"FIRES ({item.delivery.kind})" if item.delivery else "does not fire"
        lines.append("")
        lines.append(f"{spec.name} [{spec.action_type}, notify_on: {spec.notify_on}] {verdict}")
        lines.append(f"  destination: {item.channel.destination}")
        if item.problem:
            lines.append(f"  cannot render: {item.problem}")
        if item.preview is not None:
            lines.append(f"  {item.preview.method} {item.preview.destination}")
            lines.extend(f"  {k}: {v}" for k, v in item.preview.headers.items())
            lines.extend(f"    {line}" for line in item.preview.body.splitlines())
        if spec.name in outcomes:
            why = outcomes[spec.name]
            lines.append("  sent: accepted" if why is None else f"  sent: FAILED: {why}")
    if not sent and any(i.fires for i in items):
        lines.append("")
        lines.append("nothing was sent; add --send to send the actions that fire")
    return "\n".join(lines)
