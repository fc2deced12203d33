"""The rollback's count of what the reverse task carried back: read until two reads agree,
through AWS throttling (the one poll's back-off), never a count made up when none was read."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from dms_support import DmsWorld, FakeTime, make_task

from migctl.cutover.context import Timing
from migctl.cutover.fallback import _carried
from migctl.errors import CheckFailed
from migctl.sandbox import moto_dms

pytestmark = pytest.mark.usefixtures("aws")


def _ctx(world: DmsWorld, fake: FakeTime) -> Any:
    return SimpleNamespace(
        aws=SimpleNamespace(client=lambda _service: world.dms),
        reverse_task_ref=world.ref,
        timing=Timing(interval=2.0, clock=fake.clock, sleep=fake.sleep),
    )


def _stats(world: DmsWorld, inserts: int) -> None:
    moto_dms.set_table_statistics(
        world.task_arn,
        [
            {"SchemaName": "public", "TableName": "payments", "Inserts": inserts},
            {"SchemaName": "public", "TableName": "idle"},
        ],
    )


def test_the_count_settles_through_throttling() -> None:
    world = make_task("payments-reverse", migration_type="cdc")
    _stats(world, 3)

    def between_polls(sleeps: int) -> None:
        if sleeps == 1:  # DMS catches up with its counters after the first read
            _stats(world, 5)
            moto_dms.throttle("DescribeTableStatistics", 2)

    fake = FakeTime(between_polls)
    carried = _carried(_ctx(world, fake))
    assert carried == {"public.payments": {"inserts": 5, "updates": 0, "deletes": 0}}
    assert fake.sleeps == [2.0, 4.0, 8.0, 2.0]  # two throttled reads backed off, then 5 twice


def test_every_read_throttled_fails_rather_than_count_nothing() -> None:
    world = make_task("payments-reverse", migration_type="cdc")
    _stats(world, 3)
    moto_dms.throttle("DescribeTableStatistics", 1000)
    with pytest.raises(CheckFailed, match="throttled"):
        _carried(_ctx(world, FakeTime()))
