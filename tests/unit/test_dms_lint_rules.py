"""`dms lint`'s judgements that need no database: mappings, settings, readiness, partitions."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from migctl.dms.lint import mapping_findings
from migctl.dms.lint_checks import partial, readiness_findings, unsupported
from migctl.dms.lint_source import Readiness, SourceColumn, SourceTable
from migctl.dms.lint_task import (
    TaskLintSettings,
    extra_connection_attributes,
    read_task_settings,
)
from migctl.dms.mappings import parse_selection
from migctl.dms.task import resolve_task
from tests.unit.dms_support import make_task


def selection(*rules: tuple[str, str, str]) -> str:
    return json.dumps(
        {
            "rules": [
                {
                    "rule-type": "selection",
                    "rule-id": str(i),
                    "rule-name": str(i),
                    "object-locator": {"schema-name": s, "table-name": t},
                    "rule-action": a,
                }
                for i, (s, t, a) in enumerate(rules, start=1)
            ]
            + [{"rule-type": "transformation", "rule-action": "rename"}]
        }
    )


@pytest.mark.parametrize(
    ("rules", "table", "selected"),
    [
        ((("public", "%", "include"),), ("public", "payments"), True),
        ((("public", "%", "include"),), ("archive", "payments"), False),
        ((("pub%", "pay_ents", "include"),), ("public", "pay_ents"), True),
        ((("public", "pay_ents", "include"),), ("public", "payments"), False),  # _ is literal
        ((("%", "%", "include"), ("public", "tmp%", "exclude")), ("public", "tmp1"), False),
        ((("public", "payments", "explicit"),), ("public", "payments"), True),
    ],
)
def test_selection_rules(rules: Any, table: tuple[str, str], selected: bool) -> None:
    found = parse_selection(selection(*rules))
    assert found is not None and found.selects(*table) is selected


def test_unreadable_mappings_are_none() -> None:
    assert parse_selection(None) is None
    assert parse_selection("not json") is None
    assert parse_selection('{"rules": 3}') is None


def test_extra_connection_attributes_are_read_case_insensitively() -> None:
    assert extra_connection_attributes("FailTasksOnLobTruncation=TRUE; x=1;junk") == {
        "failtasksonlobtruncation": "TRUE",
        "x": "1",
    }


def settings(**changes: Any) -> TaskLintSettings:
    base = TaskLintSettings(
        identifier="t",
        arn="arn:aws:dms:us-east-1:1:task:T",
        migration_type="full-load-and-cdc",
        status="ready",
        has_run=False,
        lob_mode="limited",
        lob_max_size_kb=32,
        fail_on_lob_truncation=True,
        map_unbounded_numeric_as_string=False,
        source_endpoint="src",
    )
    return dataclasses.replace(base, **changes)


READY = Readiness(
    server_version=150000,
    wal_level="logical",
    max_replication_slots=4,
    replication_slots_used=1,
    max_wal_senders=4,
    wal_senders_used=1,
    max_prepared_transactions=10,
    prepared_transactions=0,
    oldest_prepared_at=None,
    oldest_transaction_seconds=None,
    oldest_transaction=None,
)


@pytest.mark.parametrize(
    ("ready", "task", "checks"),
    [
        (READY, settings(), []),
        (dataclasses.replace(READY, wal_level="replica"), settings(), ["wal-level"]),
        (
            dataclasses.replace(READY, wal_level="replica"),
            settings(migration_type="full-load"),
            [],
        ),
        (dataclasses.replace(READY, replication_slots_used=4), settings(), ["replication-slots"]),
        (  # a task that ran has its slot already
            dataclasses.replace(READY, replication_slots_used=4),
            settings(has_run=True, status="stopped"),
            [],
        ),
        (dataclasses.replace(READY, wal_senders_used=4), settings(), ["wal-senders"]),
        (
            dataclasses.replace(READY, wal_senders_used=4),
            settings(has_run=True, status="running"),
            [],
        ),
        (
            dataclasses.replace(READY, oldest_transaction_seconds=301.0),
            settings(),
            ["long-transaction"],
        ),
        (dataclasses.replace(READY, oldest_transaction_seconds=299.0), settings(), []),
    ],
)
def test_replication_readiness(ready: Readiness, task: TaskLintSettings, checks: list[str]) -> None:
    found = readiness_findings(ready, task, max_transaction_seconds=300)
    assert [f.check for f in found] == checks
    assert all(
        f.severity == ("warning" if f.check == "long-transaction" else "error") for f in found
    )


def column(name: str, base: str, **changes: Any) -> SourceColumn:
    fields: dict[str, Any] = {
        "name": name,
        "type_sql": base,
        "typmod": -1,
        "base": base,
        "builtin": True,
        "kind": "b",
        "category": "S",
    }
    return SourceColumn(**{**fields, **changes})


def test_type_classes() -> None:
    assert unsupported(column("m", "mood", builtin=False, kind="e")) == "enum"
    assert unsupported(column("a", "_inet", category="A", element="inet")) == "an array of inet"
    assert unsupported(column("a", "_int4", category="A", element="int4")) is None
    assert unsupported(column("j", "jsonb")) is None
    assert partial(column("t", "timestamptz")) == "timestamptz"
    assert partial(column("n", "numeric", typmod=(40 << 16) + 4)) == "numeric(p,s) with p > 38"
    assert partial(column("n", "numeric", typmod=(18 << 16) + 8)) is None
    assert partial(column("c", "citext", builtin=False)) == "citext (not in AWS's list)"
    assert partial(column("g", "geometry", builtin=False)) is None


def table(name: str, relkind: str = "r", root: str | None = None) -> SourceTable:
    return SourceTable(
        schema="public",
        name=name,
        relkind=relkind,
        unlogged=False,
        partition_of=("public", root) if root else None,
        replica_identity="d",
        has_primary_key=True,
        estimated_rows=0,
    )


EVENTS = [table("events", "p"), table("events_1", root="events"), table("events_2", root="events")]


@pytest.mark.parametrize(
    ("rules", "checks"),
    [
        ((("public", "events", "include"),), ["partition-parent-only"]),
        ((("public", "events_%", "include"),), []),  # AWS's way: the partitions only
        ((("public", "events_1", "include"),), ["partition-left-out"]),
        ((("public", "%", "include"),), ["partition-duplicated"]),
        ((("public", "nothing", "include"),), ["not-selected"]),
    ],
)
def test_partitioned_tables(rules: Any, checks: list[str]) -> None:
    chosen = parse_selection(selection(*rules, ("migctl", "cutover_marker", "include")))
    assert chosen is not None
    found = mapping_findings(EVENTS, chosen, settings())
    assert [f.check for f in found] == checks


@pytest.mark.usefixtures("aws")
def test_missing_settings_are_dms_defaults_and_say_so() -> None:
    world = make_task("defaults")
    found = read_task_settings(world.dms, world.ref())
    assert (found.lob_mode, found.lob_max_size_kb, found.fail_on_lob_truncation) == (
        "limited",
        32,
        False,
    )
    assert found.map_unbounded_numeric_as_string is False
    assert set(found.origins.values()) == {"DMS default"}
    (raw,) = world.dms.describe_replication_tasks()["ReplicationTasks"]
    for name, target, mode in (
        ("no-lobs", {"SupportLobs": False}, "none"),
        ("full-lobs", {"FullLobMode": True}, "full"),
        ("inline-lobs", {"FullLobMode": True, "InlineLobMaxSize": 8}, "inline"),
    ):
        world.dms.create_replication_task(
            ReplicationTaskIdentifier=name,
            SourceEndpointArn=raw["SourceEndpointArn"],
            TargetEndpointArn=raw["TargetEndpointArn"],
            ReplicationInstanceArn=raw["ReplicationInstanceArn"],
            MigrationType="full-load-and-cdc",
            TableMappings=raw["TableMappings"],
            ReplicationTaskSettings=json.dumps({"TargetMetadata": target}),
        )
        ref = resolve_task(world.dms, name)
        assert read_task_settings(world.dms, ref).lob_mode == mode
