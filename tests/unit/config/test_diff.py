"""diff_configs: what a reload has to do, from a table of edits to one config."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from checkpointd.config import CheckpointChange, Config, ConfigDiff, diff_configs

BASE: dict[str, Any] = {
    "daemon": {
        "state_dir": "/srv/state",
        "max_concurrent_checkpoints": 4,
        "http": {"listen": "127.0.0.1:9108"},
        "log": {"level": "info"},
    },
    "checkpoints": [
        {
            "name": "orders",
            "data_source": {"type": "csv", "path": "/data/orders.csv"},
            "validators": [{"type": "not_null", "columns": ["id"]}],
            "triggers": [{"type": "schedule", "interval": "5m"}],
            "actions": {"list": [{"type": "webhook", "url": "http://hooks/dq"}]},
        },
        {
            "name": "users",
            "data_source": {"type": "csv", "path": "/data/users.csv"},
            "triggers": [{"type": "manual"}],
        },
    ],
}

Edit = Callable[[dict[str, Any]], None]


def cp(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in data["checkpoints"] if c["name"] == name)


def set_in(*path: str | int, value: Any) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        node: Any = data
        for part in path[:-1]:
            node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
        node[path[-1]] = value

    return edit


def add_checkpoint(data: dict[str, Any]) -> None:
    data["checkpoints"].append(
        {"name": "payments", "data_source": {"type": "csv", "path": "/data/p.csv"}}
    )


def remove_users(data: dict[str, Any]) -> None:
    data["checkpoints"] = [c for c in data["checkpoints"] if c["name"] != "users"]


def rename_users(data: dict[str, Any]) -> None:
    cp(data, "users")["name"] = "people"


def reverse_order(data: dict[str, Any]) -> None:
    data["checkpoints"].reverse()


def add_trigger(data: dict[str, Any]) -> None:
    cp(data, "orders")["triggers"].append({"type": "kafka", "topic": "orders.landed"})


def tighten_validator(data: dict[str, Any]) -> None:
    cp(data, "orders")["validators"].append({"type": "row_count", "min": 1})


def change_action(data: dict[str, Any]) -> None:
    cp(data, "orders")["actions"]["list"][0]["notify_on"] = "always"


def many_things(data: dict[str, Any]) -> None:
    add_trigger(data)
    cp(data, "orders")["timeout"] = "1m"
    cp(data, "users")["actions"] = {"list": [{"type": "kafka", "topic": "results"}]}
    data["daemon"]["log"]["level"] = "debug"
    data["daemon"]["loop"] = "asyncio"


# (id, edit, expected diff)
CASES: list[tuple[str, Edit, ConfigDiff]] = [
    ("nothing", lambda data: None, ConfigDiff()),
    ("reordering checkpoints is no change", reverse_order, ConfigDiff()),
    ("a checkpoint added", add_checkpoint, ConfigDiff(added=("payments",))),
    ("a checkpoint removed", remove_users, ConfigDiff(removed=("users",))),
    ("a rename is a removal and an addition", rename_users, ConfigDiff(("people",), ("users",))),
    (
        "only triggers changed",
        add_trigger,
        ConfigDiff(changed=(CheckpointChange("orders", ("triggers",)),)),
    ),
    (
        "catch-up is about triggers too",
        set_in("checkpoints", 1, "catch_up", value="all"),
        ConfigDiff(changed=(CheckpointChange("users", ("catch_up",)),)),
    ),
    (
        "a validator changed the run definition",
        tighten_validator,
        ConfigDiff(changed=(CheckpointChange("orders", ("validators",)),)),
    ),
    (
        "a data source path changed",
        set_in("checkpoints", 1, "data_source", "path", value="/data/users2.csv"),
        ConfigDiff(changed=(CheckpointChange("users", ("data_source",)),)),
    ),
    (
        "an action changed",
        change_action,
        ConfigDiff(changed=(CheckpointChange("orders", ("actions",)),)),
    ),
    (
        "max_concurrent_checkpoints applies live",
        set_in("daemon", "max_concurrent_checkpoints", value=16),
        ConfigDiff(live=("daemon.max_concurrent_checkpoints",)),
    ),
    (
        "log level applies live",
        set_in("daemon", "log", "level", value="debug"),
        ConfigDiff(live=("daemon.log.level",)),
    ),
    (
        "the http token applies live",
        set_in("daemon", "http", "token", value="new-token"),
        ConfigDiff(live=("daemon.http.token",)),
    ),
    (
        "the state dir needs a restart",
        set_in("daemon", "state_dir", value="/srv/other"),
        ConfigDiff(restart_required=("daemon.state_dir",)),
    ),
    (
        "the listen address needs a restart",
        set_in("daemon", "http", "listen", value="0.0.0.0:9108"),
        ConfigDiff(restart_required=("daemon.http.listen",)),
    ),
    (
        "the event loop needs a restart",
        set_in("daemon", "loop", value="asyncio"),
        ConfigDiff(restart_required=("daemon.loop",)),
    ),
    (
        "the result queue size needs a restart",
        set_in("daemon", "result_queue_size", value=10),
        ConfigDiff(restart_required=("daemon.result_queue_size",)),
    ),
    (
        "adding a kafka section needs a restart",
        set_in("kafka", value={"bootstrap_servers": "broker:9092"}),
        ConfigDiff(restart_required=("kafka",)),
    ),
    (
        "many changes at once",
        many_things,
        ConfigDiff(
            changed=(
                CheckpointChange("orders", ("timeout", "triggers")),
                CheckpointChange("users", ("actions",)),
            ),
            live=("daemon.log.level",),
            restart_required=("daemon.loop",),
        ),
    ),
]


@pytest.mark.parametrize(("edit", "expected"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_diff_configs(edit: Edit, expected: ConfigDiff) -> None:
    new_data = copy.deepcopy(BASE)
    edit(new_data)
    old, new = Config.model_validate(BASE), Config.model_validate(new_data)
    assert diff_configs(old, new) == expected


def test_a_changed_kafka_setting_is_named() -> None:
    old = Config.model_validate({"kafka": {"bootstrap_servers": "a:9092"}})
    new = Config.model_validate({"kafka": {"bootstrap_servers": "b:9092"}})
    assert diff_configs(old, new).restart_required == ("kafka.bootstrap_servers",)


@pytest.mark.parametrize(
    ("keys", "triggers", "actions", "run", "only_triggers"),
    [
        (("triggers",), True, False, False, True),
        (("triggers", "max_catch_up"), True, False, False, True),
        (("actions",), False, True, False, False),
        (("validators",), False, False, True, False),
        (("triggers", "timeout"), True, False, True, False),
        (("triggers", "actions"), True, True, False, False),
    ],
)
def test_what_a_checkpoint_change_means(keys, triggers, actions, run, only_triggers) -> None:
    change = CheckpointChange("c", keys)
    assert change.triggers_changed is triggers
    assert change.actions_changed is actions
    assert change.run_changed is run
    assert change.only_triggers is only_triggers


def test_diff_flags_and_description() -> None:
    assert ConfigDiff().is_empty
    assert ConfigDiff().describe() == "no changes"
    diff = ConfigDiff(
        added=("a",),
        removed=("b",),
        changed=(CheckpointChange("c", ("triggers",)),),
        live=("daemon.log.level",),
        restart_required=("daemon.state_dir",),
    )
    assert not diff.is_empty
    assert diff.needs_restart
    assert not ConfigDiff(live=("daemon.log.level",)).needs_restart
    assert diff.describe() == (
        "added a; removed b; changed c (triggers); applied live: daemon.log.level; "
        "needs restart: daemon.state_dir"
    )


def test_diff_does_not_change_its_arguments() -> None:
    old = Config.model_validate(BASE)
    data = copy.deepcopy(BASE)
    many_things(data)
    new = Config.model_validate(data)
    before = (old.model_dump(), new.model_dump())
    diff_configs(old, new)
    assert (old.model_dump(), new.model_dump()) == before
