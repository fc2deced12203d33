"""migctl.sandbox.moto_dms: what it adds to moto's DMS; its wire responses fit the service model."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from dms_support import make_task

from migctl.sandbox import moto_dms

pytestmark = pytest.mark.usefixtures("aws")


def test_arns_end_in_a_random_resource_id_not_the_name() -> None:
    world = make_task("orders-task")
    assert not world.task_arn.endswith(":task:orders-task")
    assert len(world.resource_id) == 26 and world.resource_id.isalnum()
    instance = world.dms.describe_replication_instances()["ReplicationInstances"][0]
    assert instance["ReplicationInstanceIdentifier"] == "migctl-test-ri"
    assert not instance["ReplicationInstanceArn"].endswith(":migctl-test-ri")


def test_duplicate_task_name_is_refused() -> None:
    world = make_task("orders-task")
    task = world.dms.describe_replication_tasks()["ReplicationTasks"][0]
    with pytest.raises(ClientError) as err:
        world.dms.create_replication_task(
            ReplicationTaskIdentifier="orders-task",
            SourceEndpointArn=task["SourceEndpointArn"],
            TargetEndpointArn=task["TargetEndpointArn"],
            ReplicationInstanceArn=task["ReplicationInstanceArn"],
            MigrationType="full-load-and-cdc",
            TableMappings="{}",
        )
    assert err.value.response["Error"]["Code"] == "ResourceAlreadyExistsFault"


def _status(world: Any) -> str:
    filters = [{"Name": "replication-task-arn", "Values": [world.task_arn]}]
    return str(
        world.dms.describe_replication_tasks(Filters=filters)["ReplicationTasks"][0]["Status"]
    )


def test_lifecycle_passes_through_starting_and_stopping_and_records_calls() -> None:
    world = make_task()
    assert _status(world) == "ready"
    moto_dms.set_task(world.task_arn, after_start=["starting", "running"])
    started = world.dms.start_replication_task(
        ReplicationTaskArn=world.task_arn,
        StartReplicationTaskType="start-replication",
        CdcStopPosition="server_time:2030-01-01T00:00:00",
    )["ReplicationTask"]
    assert started["Status"] == "starting"
    assert [_status(world), _status(world), _status(world)] == ["starting", "running", "running"]
    world.dms.stop_replication_task(ReplicationTaskArn=world.task_arn)
    assert [_status(world), _status(world)] == ["stopped", "stopped"]
    extras = moto_dms.task_extras(world.task_arn)
    assert extras.start_calls == [
        {
            "StartReplicationTaskType": "start-replication",
            "CdcStopPosition": "server_time:2030-01-01T00:00:00",
            "CdcStartPosition": None,
        }
    ]
    assert extras.stop_calls == 1
    task = world.dms.describe_replication_tasks()["ReplicationTasks"][0]
    assert task["StopReason"] == "Stop Reason NORMAL"
    assert task["RecoveryCheckpoint"].startswith("checkpoint:V1#")
    assert task["CdcStopPosition"] == "server_time:2030-01-01T00:00:00"


def test_unknown_filter_match_is_resource_not_found_as_on_aws() -> None:
    world = make_task()
    with pytest.raises(ClientError) as err:
        world.dms.describe_replication_tasks(
            Filters=[{"Name": "replication-task-id", "Values": ["nope"]}]
        )
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundFault"


def test_table_statistics_are_paginated_and_filtered() -> None:
    world = make_task()
    rows = [
        {"SchemaName": "public", "TableName": f"t{i:03d}", "FullLoadRows": i} for i in range(45)
    ]
    rows[7]["TableState"] = "Table error"
    moto_dms.set_table_statistics(world.task_arn, rows)
    pages = list(
        world.dms.get_paginator("describe_table_statistics").paginate(
            ReplicationTaskArn=world.task_arn, PaginationConfig={"PageSize": 20}
        )
    )
    assert [len(p["TableStatistics"]) for p in pages] == [20, 20, 5]
    names = [t["TableName"] for p in pages for t in p["TableStatistics"]]
    assert names == [f"t{i:03d}" for i in range(45)]
    errored = world.dms.describe_table_statistics(
        ReplicationTaskArn=world.task_arn,
        Filters=[{"Name": "table-state", "Values": ["Table error"]}],
    )["TableStatistics"]
    assert [(t["TableName"], t["FullLoadRows"]) for t in errored] == [("t007", 7)]


def test_throttle_raises_throttling_exception_then_recovers() -> None:
    world = make_task()
    moto_dms.throttle("DescribeReplicationTasks", 1)
    with pytest.raises(ClientError) as err:
        _status(world)
    assert err.value.response["Error"]["Code"] == "ThrottlingException"
    assert _status(world) == "ready"


def test_wire_responses_pass_stubber_validation_against_the_service_model() -> None:
    """The raw JSON the extension writes is a valid response in botocore's model: no stray key."""
    world = make_task()
    bodies: list[tuple[str, dict[str, Any]]] = []

    def capture(http_response: Any, model: Any, **_: Any) -> None:
        bodies.append((model.name, json.loads(http_response.content or b"{}")))

    world.dms.meta.events.register("after-call.database-migration-service.*", capture)
    moto_dms.set_table_statistics(
        world.task_arn,
        [
            {
                "SchemaName": "public",
                "TableName": "payments",
                "ValidationState": "Mismatched records",
            }
        ],
    )
    world.dms.start_replication_task(
        ReplicationTaskArn=world.task_arn, StartReplicationTaskType="start-replication"
    )
    moto_dms.set_task(
        world.task_arn,
        status="failed",
        stop_reason="Stop Reason FATAL_ERROR",
        last_failure_message="Last Error ODBC general error",
        stats={"FullLoadProgressPercent": 40, "TablesErrored": 1},
    )
    world.dms.describe_replication_tasks(WithoutSettings=True)
    world.dms.describe_table_statistics(ReplicationTaskArn=world.task_arn, MaxRecords=20)
    moto_dms.set_task(world.task_arn, status="running")
    world.dms.stop_replication_task(ReplicationTaskArn=world.task_arn)
    seen = {name for name, _ in bodies}
    assert {
        "StartReplicationTask",
        "DescribeReplicationTasks",
        "DescribeTableStatistics",
        "StopReplicationTask",
    } <= seen
    stubber = Stubber(world.dms)
    for name, body in bodies:
        snake = world.dms.meta.method_to_api_mapping
        method = next(k for k, v in snake.items() if v == name)
        stubber.add_response(method, body)  # raises ParamValidationError on any mismatch


def test_task_settings_and_postgresql_settings_round_trip_and_modify_endpoint_merges() -> None:
    """The sandbox's emulated DMS reads both when a task starts: they must come back as sent,
    and ModifyEndpoint (which moto lacks) must change them as AWS does."""
    from infra_pulumi.dms_settings import source_postgres_settings, task_settings

    world = make_task()
    task = world.dms.describe_replication_tasks()["ReplicationTasks"][0]
    dms = world.dms
    source = dms.create_endpoint(
        EndpointIdentifier="lob-source",
        EndpointType="source",
        EngineName="postgres",
        ServerName="127.0.0.1",
        Port=5432,
        DatabaseName="payments",
        Username="migctl",
        PostgreSQLSettings={**source_postgres_settings(), "SlotName": "kept"},
    )["Endpoint"]
    created = dms.create_replication_task(
        ReplicationTaskIdentifier="lob-task",
        SourceEndpointArn=source["EndpointArn"],
        TargetEndpointArn=task["TargetEndpointArn"],
        ReplicationInstanceArn=task["ReplicationInstanceArn"],
        MigrationType="full-load-and-cdc",
        TableMappings="{}",
        ReplicationTaskSettings=task_settings(),
    )["ReplicationTask"]
    described = dms.describe_replication_tasks(
        Filters=[{"Name": "replication-task-arn", "Values": [created["ReplicationTaskArn"]]}]
    )["ReplicationTasks"][0]
    assert json.loads(described["ReplicationTaskSettings"]) == json.loads(task_settings())

    def settings() -> dict[str, Any]:
        found = dms.describe_endpoints(
            Filters=[{"Name": "endpoint-arn", "Values": [source["EndpointArn"]]}]
        )["Endpoints"][0]
        return dict(found["PostgreSQLSettings"])

    assert settings() == {"FailTasksOnLobTruncation": True, "SlotName": "kept"}
    modified = dms.modify_endpoint(
        EndpointArn=source["EndpointArn"], PostgreSQLSettings={"FailTasksOnLobTruncation": False}
    )["Endpoint"]
    assert modified["PostgreSQLSettings"] == {"FailTasksOnLobTruncation": False, "SlotName": "kept"}
    assert settings() == {"FailTasksOnLobTruncation": False, "SlotName": "kept"}
    dms.modify_endpoint(
        EndpointArn=source["EndpointArn"],
        PostgreSQLSettings={"FailTasksOnLobTruncation": True},
        ExactSettings=True,
    )
    assert settings() == {"FailTasksOnLobTruncation": True}
    with pytest.raises(ClientError) as err:
        dms.modify_endpoint(EndpointArn=source["EndpointArn"] + "x", PostgreSQLSettings={})
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundFault"


def test_the_emulated_dms_reads_the_lob_rules_as_dms_does() -> None:
    from infra_pulumi.dms_settings import LobSettings, task_settings
    from migctl.sandbox.transit import TransitRules

    assert TransitRules.from_dms(task_settings(), {"FailTasksOnLobTruncation": True}) == (
        TransitRules(lob_max_bytes=32 * 1024, fail_on_lob_truncation=True)
    )
    # DMS's defaults: limited LOB mode, 32 KB, FailTasksOnLobTruncation false
    assert TransitRules.from_dms(None, None) == TransitRules(32 * 1024, False)
    full = task_settings(LobSettings(mode="full", max_size_kb=8))
    assert TransitRules.from_dms(full, {}).lob_max_bytes is None
    small = task_settings(LobSettings(max_size_kb=8))
    assert TransitRules.from_dms(small, {"FailTasksOnLobTruncation": False}) == (
        TransitRules(8 * 1024, False)
    )
