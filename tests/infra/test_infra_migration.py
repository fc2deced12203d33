"""Migration: DMS through Secrets Manager only, a full-load-and-cdc task, the validation Lambda."""

from __future__ import annotations

import json
import re

import pytest
from infra_support import SOURCE_HOST, SOURCE_KMS_KEY_ARN, SOURCE_SECRET_ARN, Evaluate, policy

from infra_pulumi.config import StackConfigError
from infra_pulumi.offline import Evaluation

TASK = "aws:dms/replicationTask:ReplicationTask"
INSTANCE = "aws:dms/replicationInstance:ReplicationInstance"
FUNCTION = "aws:lambda/function:Function"


def test_replication_instance_class_from_config_multi_az_in_production(
    test_env: Evaluation, prod_env: Evaluation
) -> None:
    test_instance = test_env.one(INSTANCE).inputs
    assert test_instance["replicationInstanceClass"] == "dms.t3.medium"
    assert test_instance["multiAz"] is False and test_instance["publiclyAccessible"] is False
    assert test_instance["vpcSecurityGroupIds"] == ["network-dms-sg-test-id"]
    prod_instance = prod_env.one(INSTANCE).inputs
    assert prod_instance["multiAz"] is True and prod_instance["engineVersion"] == "3.5.4"
    group = test_env.one("aws:dms/replicationSubnetGroup:ReplicationSubnetGroup").inputs
    assert group["subnetIds"] == test_env.outputs["privateSubnetIds"]


def test_endpoints_use_secrets_manager_with_an_access_role(test_env: Evaluation) -> None:
    endpoints = {
        e.inputs["endpointType"]: e.inputs
        for e in test_env.of_type("aws:dms/endpoint:Endpoint")
        if "reverse" not in e.name
    }
    role_arn = "arn:aws:iam:us-east-1:123456789012:role/migctl-dms-secrets-test"
    assert endpoints["source"]["engineName"] == "postgres"
    assert endpoints["source"]["secretsManagerArn"] == SOURCE_SECRET_ARN
    assert endpoints["target"]["engineName"] == "aurora-postgresql"
    for endpoint in endpoints.values():
        assert endpoint["secretsManagerAccessRoleArn"] == role_arn
        assert endpoint["sslMode"] == "require"
    trust = json.loads(test_env.named("migration-secrets-role-test").inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"]["Service"] == ["dms.us-east-1.amazonaws.com"]
    document = policy(test_env.named("migration-secrets-policy-test").inputs)
    readable = document["Statement"][0]["Resource"]  # type: ignore[index]
    assert readable == [SOURCE_SECRET_ARN, endpoints["target"]["secretsManagerArn"]]


def test_the_target_secret_is_generated_write_only_and_secret(test_env: Evaluation) -> None:
    secret = test_env.one("aws:secretsmanager/secret:Secret").inputs
    assert secret["name"] == "migctl/test/dms-target" and secret["recoveryWindowInDays"] == 0
    version = test_env.one("aws:secretsmanager/secretVersion:SecretVersion").inputs
    assert "secretString" not in version and version["secretStringWoVersion"] == 1
    wrapped = version["secretStringWo"]
    assert set(wrapped) == {"4dabf18193072939515e22adb298388d", "value"}  # Pulumi's secret marker
    connection = json.loads(wrapped["value"])
    assert connection["host"] == test_env.outputs["auroraEndpoint"]
    assert connection["username"] == "migctl_dms" and len(connection["password"]) >= 30
    assert "aws:secretsmanager/getRandomPassword:getRandomPassword" in test_env.invokes


def test_replication_task_is_full_load_and_cdc_validated_logged_and_not_started(
    test_env: Evaluation, run_program: Evaluate
) -> None:
    task = test_env.named("migration-task-test").inputs
    assert task["migrationType"] == "full-load-and-cdc"
    assert task["startReplicationTask"] is False
    settings = json.loads(task["replicationTaskSettings"])
    assert settings["ValidationSettings"]["EnableValidation"] is True
    assert settings["Logging"]["EnableLogging"] is True
    rules = json.loads(task["tableMappings"])["rules"]
    assert [r["object-locator"]["schema-name"] for r in rules] == ["public", "migctl"]
    two = run_program(migrationSchemas=["payments", "ledger"]).named("migration-task-test").inputs
    locators = [r["object-locator"] for r in json.loads(two["tableMappings"])["rules"]]
    assert locators == [
        {"schema-name": "payments", "table-name": "%"},
        {"schema-name": "ledger", "table-name": "%"},
        {"schema-name": "migctl", "table-name": "cutover_marker"},
    ]
    with_marker = (
        run_program(migrationSchemas=["public", "migctl"]).named("migration-task-test").inputs
    )
    rules = json.loads(with_marker["tableMappings"])["rules"]
    assert [r["object-locator"]["schema-name"] for r in rules] == ["public", "migctl"]


def test_the_way_back_is_a_cdc_only_task_from_auroras_slot_to_the_source_never_started(
    test_env: Evaluation, run_program: Evaluate
) -> None:
    reverse = test_env.named("migration-reverse-task-test").inputs
    assert reverse["migrationType"] == "cdc" and reverse["startReplicationTask"] is False
    settings = json.loads(reverse["replicationTaskSettings"])
    assert settings["TargetMetadata"]["BatchApplyEnabled"] is False  # commit order, no loops
    assert settings["ErrorBehavior"]["TableErrorPolicy"] == "STOP_TASK"
    assert json.loads(reverse["tableMappings"]) == json.loads(
        test_env.named("migration-task-test").inputs["tableMappings"]
    )  # the marker too: the rollback's drain reads it on the source
    aurora = test_env.named("migration-reverse-source-test").inputs
    assert (aurora["endpointType"], aurora["engineName"]) == ("source", "aurora-postgresql")
    assert aurora["postgresSettings"] == {
        "slotName": "migctl_reverse",
        "pluginName": "test-decoding",
        "failTasksOnLobTruncation": True,
    }
    onprem = test_env.named("migration-reverse-target-test").inputs
    assert (onprem["endpointType"], onprem["engineName"]) == ("target", "postgres")
    assert onprem["secretsManagerArn"] == SOURCE_SECRET_ARN  # no reverse secret given
    assert test_env.outputs["dmsReverseTaskArn"].startswith("arn:aws:dms:")
    own = "arn:aws:secretsmanager:us-east-1:123456789012:secret:reverse-writer"
    ev = run_program(sourceReverseSecretArn=own, reverseSlotName="way_back")
    assert ev.named("migration-reverse-target-test").inputs["secretsManagerArn"] == own
    slot = ev.named("migration-reverse-source-test").inputs["postgresSettings"]["slotName"]
    assert slot == "way_back"
    readable = policy(ev.named("migration-secrets-policy-test").inputs)["Statement"][0]["Resource"]  # type: ignore[index]
    assert own in readable
    aurora_params = test_env.one("aws:rds/clusterParameterGroup:ClusterParameterGroup").inputs
    assert {"name": "rds.logical_replication", "value": "1", "applyMethod": "pending-reboot"} in (
        aurora_params["parameters"]
    )


def test_task_always_replicates_the_cutover_marker_table() -> None:
    from infra_pulumi.components import migration
    from migctl.cutover import marker

    assert (migration.MARKER_SCHEMA, migration.MARKER_TABLE) == (marker.SCHEMA, marker.TABLE)


def test_validation_lambda_reads_only_the_two_secrets(
    test_env: Evaluation, prod_env: Evaluation
) -> None:
    for ev in (test_env, prod_env):
        env = ev.outputs["environment"]
        function = ev.one(FUNCTION).inputs
        assert function["runtime"] == "python3.12" and function["name"] == f"migctl-validate-{env}"
        assert function["vpcConfig"]["subnetIds"] == ev.outputs["privateSubnetIds"]
        assert function["vpcConfig"]["securityGroupIds"] == [f"network-lambda-sg-{env}-id"]
        variables = function["environment"]["variables"]
        assert variables["SOURCE_HOST"] == SOURCE_HOST and variables["SOURCE_PORT"] == "5432"
        assert variables["TARGET_SECRET_ARN"] == ev.outputs["auroraSecretArn"]
        document = policy(ev.named(f"migration-lambda-secrets-{env}").inputs)
        statements = document["Statement"]
        assert statements[0]["Resource"] == [ev.outputs["auroraSecretArn"], SOURCE_SECRET_ARN]  # type: ignore[index]
        assert statements[0]["Action"] == [
            "secretsmanager:GetSecretValue",
            "secretsmanager:DescribeSecret",
        ]  # type: ignore[index]
        secrets_statements = [
            s for s in statements if "secretsmanager:GetSecretValue" in s["Action"]
        ]  # type: ignore[union-attr, operator]
        assert len(secrets_statements) == 1
        assert (
            ev.named(f"migration-lambda-logs-{env}").inputs["name"]
            == f"/aws/lambda/migctl-validate-{env}"
        )
    keys = policy(prod_env.named("migration-lambda-secrets-prod").inputs)["Statement"][1][
        "Resource"
    ]  # type: ignore[index]
    assert SOURCE_KMS_KEY_ARN in keys


def test_without_a_source_the_lambda_reads_only_the_aurora_secret(
    no_source_env: Evaluation,
) -> None:
    variables = no_source_env.one(FUNCTION).inputs["environment"]["variables"]
    assert not [k for k in variables if k.startswith("SOURCE_")]
    document = policy(no_source_env.named("migration-lambda-secrets-staging").inputs)
    assert document["Statement"][0]["Resource"] == [no_source_env.outputs["auroraSecretArn"]]  # type: ignore[index]
    assert no_source_env.of_type("aws:secretsmanager/secret:Secret") == []


def test_dms_service_roles_only_when_asked(test_env: Evaluation, prod_env: Evaluation) -> None:
    names = {r.inputs["name"] for r in prod_env.of_type("aws:iam/role:Role")}
    assert {"dms-vpc-role", "dms-cloudwatch-logs-role"} <= names
    assert not {"dms-vpc-role", "dms-cloudwatch-logs-role"} & {
        r.inputs["name"] for r in test_env.of_type("aws:iam/role:Role")
    }


def test_lobs_are_limited_to_32_kb_and_a_longer_one_fails_the_task_both_ways(
    test_env: Evaluation, run_program: Evaluate
) -> None:
    """DMS truncates a LOB over LobMaxSize silently unless the PostgreSQL *source endpoint*
    says FailTasksOnLobTruncation; both directions carry LOBs, so both source endpoints do."""
    for task in ("migration-task-test", "migration-reverse-task-test"):
        metadata = json.loads(test_env.named(task).inputs["replicationTaskSettings"])[
            "TargetMetadata"
        ]
        assert metadata["SupportLobs"] is True
        assert (metadata["LimitedSizeLobMode"], metadata["FullLobMode"]) == (True, False)
        assert metadata["LobMaxSize"] == 32
    forward = test_env.named("migration-source-test").inputs["postgresSettings"]
    assert forward == {"failTasksOnLobTruncation": True}
    reverse = test_env.named("migration-reverse-source-test").inputs["postgresSettings"]
    assert reverse["failTasksOnLobTruncation"] is True
    for name in ("migration-target-test", "migration-reverse-target-test"):
        assert "postgresSettings" not in test_env.named(name).inputs  # DMS reads it on sources

    full = run_program(lobMode="full", lobMaxSizeKb=64)
    for task in ("migration-task-test", "migration-reverse-task-test"):
        metadata = json.loads(full.named(task).inputs["replicationTaskSettings"])["TargetMetadata"]
        assert (metadata["LimitedSizeLobMode"], metadata["FullLobMode"]) == (False, True)
        assert metadata["LobMaxSize"] == 64


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lobMode": "inline"}, "migctl:lobMode must be 'limited' or 'full', not 'inline'"),
        ({"lobMaxSizeKb": "0"}, "migctl:lobMaxSizeKb must be a whole number of KB from 1 to"),
        ({"lobMaxSizeKb": "32.5"}, "not '32.5'"),
        ({"lobMaxSizeKb": "102401"}, "not '102401'"),
    ],
)
def test_a_bad_lob_setting_is_one_clear_error(
    run_program: Evaluate, overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(StackConfigError, match=re.escape(message)):
        run_program(**overrides)


def test_the_sandbox_and_the_program_build_the_task_settings_in_one_place() -> None:
    from infra_pulumi import dms_settings
    from infra_pulumi.components import migration

    assert migration.task_settings is dms_settings.task_settings
    assert migration.reverse_task_settings is dms_settings.reverse_task_settings


def test_lob_settings_refuse_what_dms_would_refuse() -> None:
    """The builder's own guard, for callers that do not come through the stack config."""
    from infra_pulumi.dms_settings import LobSettings

    with pytest.raises(ValueError, match="LOB mode must be one of limited, full, not 'partial'"):
        LobSettings(mode="partial")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="LobMaxSize must be 1 to 102400 KB, not 0"):
        LobSettings(max_size_kb=0)
    assert LobSettings(max_size_kb=102400).target_metadata()["LobMaxSize"] == 102400
