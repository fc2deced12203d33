"""Monitoring: alarms named with the environment, real dimensions, SNS and DMS failure events."""

from __future__ import annotations

import json

from infra_pulumi.components.monitoring import task_resource_id
from infra_pulumi.offline import FAKE_TASK_RESOURCE_ID, Evaluation

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
EXPECTED = {
    "alb-healthy-hosts": ("AWS/ApplicationELB", "HealthyHostCount"),
    "alb-5xx": ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count"),
    "alb-p99-latency": ("AWS/ApplicationELB", "TargetResponseTime"),
    "ecs-cpu": ("AWS/ECS", "CPUUtilization"),
    "ecs-memory": ("AWS/ECS", "MemoryUtilization"),
    "aurora-cpu": ("AWS/RDS", "CPUUtilization"),
    "aurora-freeable-memory": ("AWS/RDS", "FreeableMemory"),
    "aurora-connections": ("AWS/RDS", "DatabaseConnections"),
    "lambda-errors": ("AWS/Lambda", "Errors"),
    "dms-cdc-latency": ("AWS/DMS", "CDCLatencyTarget"),
}


def _alarms(ev: Evaluation) -> dict[str, dict[str, object]]:
    prefix = f"migctl-{ev.outputs['environment']}-"
    return {a.inputs["name"].removeprefix(prefix): dict(a.inputs) for a in ev.of_type(ALARM)}


def test_every_alarm_is_named_with_the_environment_and_listed_in_the_outputs(
    all_envs: dict[str, Evaluation],
) -> None:
    for env, ev in all_envs.items():
        names = [a.inputs["name"] for a in ev.of_type(ALARM)]
        assert all(n.startswith(f"migctl-{env}-") for n in names)
        assert sorted(ev.outputs["alarmNames"]) == sorted(names)
        topic = ev.outputs["snsTopicArn"]
        for alarm in ev.of_type(ALARM):
            assert alarm.inputs["alarmActions"] == [topic] and alarm.inputs["okActions"] == [topic]


def test_the_alarm_set_with_a_source(test_env: Evaluation) -> None:
    alarms = _alarms(test_env)
    assert {k: (v["namespace"], v["metricName"]) for k, v in alarms.items()} == EXPECTED
    healthy = alarms["alb-healthy-hosts"]
    assert (healthy["comparisonOperator"], healthy["threshold"]) == ("LessThanThreshold", 1)
    assert healthy["treatMissingData"] == "breaching"
    assert alarms["alb-p99-latency"]["extendedStatistic"] == "p99"
    assert "statistic" not in alarms["alb-p99-latency"]
    assert alarms["alb-5xx"]["dimensions"]["LoadBalancer"] == test_env.outputs["albArnSuffix"]  # type: ignore[index]
    assert alarms["ecs-cpu"]["dimensions"] == {
        "ClusterName": "migctl-test",
        "ServiceName": "migctl-app-test",
    }
    assert alarms["aurora-cpu"]["dimensions"] == {"DBClusterIdentifier": "migctl-aurora-test"}
    assert alarms["lambda-errors"]["dimensions"] == {"FunctionName": "migctl-validate-test"}


def test_cdc_latency_alarm_uses_the_task_resource_id_from_its_arn(
    test_env: Evaluation, prod_env: Evaluation
) -> None:
    for ev in (test_env, prod_env):
        env = ev.outputs["environment"]
        alarm = _alarms(ev)["dms-cdc-latency"]
        assert ev.outputs["dmsReplicationTaskArn"].endswith(f":task:{FAKE_TASK_RESOURCE_ID}")
        assert alarm["dimensions"] == {
            "ReplicationInstanceIdentifier": f"migctl-dms-{env}",
            "ReplicationTaskIdentifier": FAKE_TASK_RESOURCE_ID,
        }
    assert _alarms(test_env)["dms-cdc-latency"]["threshold"] == 60
    assert _alarms(prod_env)["dms-cdc-latency"]["threshold"] == 30
    assert task_resource_id("arn:aws:dms:eu-west-1:1:task:XYZ") == "XYZ"


def test_production_alarm_thresholds(prod_env: Evaluation) -> None:
    alarms = _alarms(prod_env)
    assert alarms["alb-healthy-hosts"]["threshold"] == 3
    assert alarms["alb-p99-latency"]["threshold"] == 1.0


def test_no_source_means_no_cdc_alarm_and_no_event_rule(no_source_env: Evaluation) -> None:
    assert "dms-cdc-latency" not in _alarms(no_source_env)
    assert no_source_env.of_type("aws:cloudwatch/eventRule:EventRule") == []
    document = json.loads(no_source_env.one("aws:sns/topicPolicy:TopicPolicy").inputs["policy"])
    assert document["Statement"][0]["Principal"]["Service"] == ["cloudwatch.amazonaws.com"]


def test_dms_task_failures_reach_sns_through_eventbridge(test_env: Evaluation) -> None:
    rule = test_env.one("aws:cloudwatch/eventRule:EventRule").inputs
    pattern = json.loads(rule["eventPattern"])
    assert pattern["source"] == ["aws.dms"]
    assert pattern["resources"] == [test_env.outputs["dmsReplicationTaskArn"]]
    assert pattern["detail"] == {"eventType": ["REPLICATION_TASK_FAILED"]}
    target = test_env.one("aws:cloudwatch/eventTarget:EventTarget").inputs
    assert target["arn"] == test_env.outputs["snsTopicArn"]
    document = json.loads(test_env.one("aws:sns/topicPolicy:TopicPolicy").inputs["policy"])
    statement = document["Statement"][0]
    assert statement["Principal"]["Service"] == ["cloudwatch.amazonaws.com", "events.amazonaws.com"]
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_optional_email_subscription(test_env: Evaluation, prod_env: Evaluation) -> None:
    assert test_env.of_type("aws:sns/topicSubscription:TopicSubscription") == []
    subscription = prod_env.one("aws:sns/topicSubscription:TopicSubscription").inputs
    assert subscription["protocol"] == "email"
    assert subscription["endpoint"] == "payments-oncall@example.com"
