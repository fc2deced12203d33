"""Monitoring: an SNS topic, the alarms migctl gates on, and DMS failure events.

Alarm names are ``migctl-<environment>-<what>``; they are fixed strings so
the ECS service can name its deployment alarms before they exist (see
:func:`deployment_alarm_names`), and migctl resolves them from the
``alarmNames`` output. Every dimension comes from the resource it watches:
the ALB and target group ``arn_suffix`` values, and the DMS task's resource
id taken from the end of its ARN (not its name, which returns no data).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra_pulumi.components import json_output, policy_document

MIB = 1024 * 1024


def alarm_name(environment: str, what: str) -> str:
    return f"migctl-{environment}-{what}"


def deployment_alarm_names(environment: str) -> list[str]:
    """The alarms that roll an ECS deployment back: errors and latency of the new tasks."""
    return [alarm_name(environment, "alb-5xx"), alarm_name(environment, "alb-p99-latency")]


def task_resource_id(task_arn: str) -> str:
    """``arn:aws:dms:...:task:ABCDEF`` -> ``ABCDEF`` (the CloudWatch dimension value)."""
    return task_arn.rsplit(":", 1)[-1]


@dataclass(frozen=True)
class MonitoringArgs:
    environment: str
    alarm_email: str | None
    alb_arn_suffix: pulumi.Input[str]
    target_group_arn_suffix: pulumi.Input[str]
    desired_count: int
    ecs_cluster_name: pulumi.Input[str]
    ecs_service_name: pulumi.Input[str]
    aurora_cluster_identifier: pulumi.Input[str]
    dms_instance_identifier: pulumi.Input[str]
    dms_task_arn: pulumi.Input[str] | None
    lambda_function_name: pulumi.Input[str]
    p99_latency_seconds: float
    cdc_latency_seconds: int
    tags: Mapping[str, str]


@dataclass(frozen=True)
class _Alarm:
    what: str
    description: str
    namespace: str
    metric: str
    dimensions: Mapping[str, pulumi.Input[str]]
    comparison: str
    threshold: float
    statistic: str = "Average"
    missing: str = "notBreaching"
    periods: int = 3


class Monitoring(pulumi.ComponentResource):
    """Alarms on the ALB, ECS, Aurora, DMS and the Lambda, all notifying one topic."""

    def __init__(
        self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("migctl:infra:Monitoring", name, None, opts)
        env = args.environment
        child = pulumi.ResourceOptions(parent=self)
        self.topic = aws.sns.Topic(
            f"{name}-topic-{env}", name=f"migctl-alarms-{env}", tags=args.tags, opts=child
        )
        if args.alarm_email:
            aws.sns.TopicSubscription(
                f"{name}-email-{env}",
                topic=self.topic.arn,
                protocol="email",
                endpoint=args.alarm_email,
                opts=child,
            )
        self.alarms = [self._alarm(name, args, alarm) for alarm in _alarms(args)]
        self.alarm_names: pulumi.Output[list[str]] = pulumi.Output.all(
            *[a.name for a in self.alarms]
        ).apply(list)

        publishers = ["cloudwatch.amazonaws.com"]
        if args.dms_task_arn is not None:
            publishers.append("events.amazonaws.com")
            self._task_failure_rule(name, args, args.dms_task_arn)
        account = aws.get_caller_identity_output().account_id
        aws.sns.TopicPolicy(
            f"{name}-topic-policy-{env}",
            arn=self.topic.arn,
            policy=pulumi.Output.all(self.topic.arn, account).apply(
                lambda values: policy_document(
                    [
                        {
                            "Sid": "AwsServicesOfThisAccountPublish",
                            "Effect": "Allow",
                            "Principal": {"Service": publishers},
                            "Action": "sns:Publish",
                            "Resource": values[0],
                            "Condition": {"StringEquals": {"aws:SourceAccount": values[1]}},
                        }
                    ]
                )
            ),
            opts=child,
        )
        self.register_outputs({"topicArn": self.topic.arn, "alarmNames": self.alarm_names})

    def _alarm(self, name: str, args: MonitoringArgs, alarm: _Alarm) -> aws.cloudwatch.MetricAlarm:
        percentile = alarm.statistic.startswith("p")
        return aws.cloudwatch.MetricAlarm(
            f"{name}-{alarm.what}-{args.environment}",
            name=alarm_name(args.environment, alarm.what),
            alarm_description=alarm.description,
            namespace=alarm.namespace,
            metric_name=alarm.metric,
            dimensions=dict(alarm.dimensions),
            statistic=None if percentile else alarm.statistic,
            extended_statistic=alarm.statistic if percentile else None,
            comparison_operator=alarm.comparison,
            threshold=alarm.threshold,
            period=60,
            evaluation_periods=alarm.periods,
            datapoints_to_alarm=alarm.periods,
            treat_missing_data=alarm.missing,
            alarm_actions=[self.topic.arn],
            ok_actions=[self.topic.arn],
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _task_failure_rule(
        self, name: str, args: MonitoringArgs, task_arn: pulumi.Input[str]
    ) -> None:
        env = args.environment
        child = pulumi.ResourceOptions(parent=self)
        rule = aws.cloudwatch.EventRule(
            f"{name}-dms-failure-{env}",
            name=f"migctl-dms-task-failed-{env}",
            description=f"migctl {env}: the DMS replication task failed",
            event_pattern=json_output(
                {
                    "source": ["aws.dms"],
                    "detail-type": ["DMS Replication Task State Change"],
                    "resources": [task_arn],
                    "detail": {"eventType": ["REPLICATION_TASK_FAILED"]},
                }
            ),
            tags=args.tags,
            opts=child,
        )
        aws.cloudwatch.EventTarget(
            f"{name}-dms-failure-target-{env}", rule=rule.name, arn=self.topic.arn, opts=child
        )


def _alarms(args: MonitoringArgs) -> list[_Alarm]:
    alb = {"LoadBalancer": args.alb_arn_suffix}
    alb_tg = {**alb, "TargetGroup": args.target_group_arn_suffix}
    ecs = {"ClusterName": args.ecs_cluster_name, "ServiceName": args.ecs_service_name}
    aurora = {"DBClusterIdentifier": args.aurora_cluster_identifier}
    alarms = [
        _Alarm(
            "alb-healthy-hosts",
            f"fewer healthy targets than the {args.desired_count} desired",
            "AWS/ApplicationELB",
            "HealthyHostCount",
            alb_tg,
            "LessThanThreshold",
            args.desired_count,
            statistic="Minimum",
            missing="breaching",
        ),
        _Alarm(
            "alb-5xx",
            "targets answer 5xx",
            "AWS/ApplicationELB",
            "HTTPCode_Target_5XX_Count",
            alb_tg,
            "GreaterThanThreshold",
            10,
            statistic="Sum",
        ),
        _Alarm(
            "alb-p99-latency",
            f"p99 response time above {args.p99_latency_seconds}s",
            "AWS/ApplicationELB",
            "TargetResponseTime",
            alb_tg,
            "GreaterThanThreshold",
            args.p99_latency_seconds,
            statistic="p99",
        ),
        _Alarm(
            "ecs-cpu",
            "service CPU above 80%",
            "AWS/ECS",
            "CPUUtilization",
            ecs,
            "GreaterThanThreshold",
            80,
        ),
        _Alarm(
            "ecs-memory",
            "service memory above 80%",
            "AWS/ECS",
            "MemoryUtilization",
            ecs,
            "GreaterThanThreshold",
            80,
        ),
        _Alarm(
            "aurora-cpu",
            "Aurora CPU above 80%",
            "AWS/RDS",
            "CPUUtilization",
            aurora,
            "GreaterThanThreshold",
            80,
        ),
        _Alarm(
            "aurora-freeable-memory",
            "Aurora freeable memory below 256 MiB",
            "AWS/RDS",
            "FreeableMemory",
            aurora,
            "LessThanThreshold",
            256 * MIB,
        ),
        _Alarm(
            "aurora-connections",
            "Aurora connections above 500",
            "AWS/RDS",
            "DatabaseConnections",
            aurora,
            "GreaterThanThreshold",
            500,
            statistic="Maximum",
        ),
        _Alarm(
            "lambda-errors",
            "the validation Lambda failed",
            "AWS/Lambda",
            "Errors",
            {"FunctionName": args.lambda_function_name},
            "GreaterThanThreshold",
            0,
            statistic="Sum",
            periods=1,
        ),
    ]
    if args.dms_task_arn is not None:
        task_id = pulumi.Output.from_input(args.dms_task_arn).apply(task_resource_id)
        alarms.append(
            _Alarm(
                "dms-cdc-latency",
                f"CDC apply latency above {args.cdc_latency_seconds}s",
                "AWS/DMS",
                "CDCLatencyTarget",
                {
                    "ReplicationInstanceIdentifier": args.dms_instance_identifier,
                    "ReplicationTaskIdentifier": task_id,
                },
                "GreaterThanThreshold",
                args.cdc_latency_seconds,
                statistic="Maximum",
                missing="missing",  # a stopped task has no data: INSUFFICIENT_DATA, not OK
            )
        )
    return alarms
