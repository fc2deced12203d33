"""Create in the local AWS endpoint what ``infra_pulumi`` would create for the environment.

Secrets for both databases, the DMS instance, endpoints and task, the ECS
cluster, service and task definition, the ALB and target group, the gate
alarms and the SNS topic. Everything goes through the ordinary AWS APIs of
the moto server, so migctl's commands find it exactly as they would on AWS.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_dms import DatabaseMigrationServiceClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_elbv2 import ElasticLoadBalancingv2Client
    from mypy_boto3_secretsmanager import SecretsManagerClient

ENV = "sandbox"
APP_IMAGE = "payments-app:1.0.0"
CONTAINER = "app"


@dataclass(frozen=True)
class Database:
    host: str
    port: int
    dbname: str
    username: str


@dataclass(frozen=True)
class Preloaded:
    source_secret_arn: str
    target_secret_arn: str
    dms_instance_arn: str
    dms_task_arn: str
    reverse_task_arn: str
    ecs_cluster: str
    ecs_service: str
    ecs_container: str
    task_definition_arn: str
    alb_arn_suffix: str
    target_group_arn_suffix: str
    ecs_standby_service: str
    listener_arn: str
    alarm_names: tuple[str, ...]
    sns_topic_arn: str

    def outputs(self) -> dict[str, Any]:
        """The same names as infra_pulumi's stack outputs."""
        return {
            "environment": ENV,
            "auroraSecretArn": self.target_secret_arn,
            "dmsReplicationInstanceArn": self.dms_instance_arn,
            "dmsReplicationTaskArn": self.dms_task_arn,
            "dmsReverseTaskArn": self.reverse_task_arn,
            "ecsClusterName": self.ecs_cluster,
            "ecsServiceName": self.ecs_service,
            "ecsContainerName": self.ecs_container,
            "ecsStandbyServiceName": self.ecs_standby_service,
            "albListenerArn": self.listener_arn,
            "albArnSuffix": self.alb_arn_suffix,
            "targetGroupArnSuffix": self.target_group_arn_suffix,
            "alarmNames": list(self.alarm_names),
            "snsTopicArn": self.sns_topic_arn,
        }


def _secret(sm: SecretsManagerClient, name: str, db: Database) -> str:
    # Loopback trust auth ignores the password; it is generated so that the
    # secret has the RDS shape and no fixed value ever exists.
    value = {
        "engine": "postgres",
        "host": db.host,
        "port": db.port,
        "dbname": db.dbname,
        "username": db.username,
        "password": secrets.token_urlsafe(24),
    }
    return str(sm.create_secret(Name=name, SecretString=json.dumps(value))["ARN"])


def preload(session: boto3.Session, source: Database, target: Database) -> Preloaded:
    """Create every resource; ``session`` is a boto3 session pointed at the moto server."""
    sm = session.client("secretsmanager")
    source_arn = _secret(sm, f"payments-{ENV}/source-db", source)
    target_arn = _secret(sm, f"payments-{ENV}/aurora-master", target)
    instance_arn, task_arn, reverse_arn = _dms(session.client("dms"), source, target)
    balancer = _load_balancer(session.client("ec2"), session.client("elbv2"))
    alb_suffix, tg_suffix = balancer.alb_arn_suffix, balancer.target_group_arn_suffix
    cluster, service, standby, taskdef_arn = _ecs(session.client("ecs"), target_arn, balancer)
    topic_arn = str(session.client("sns").create_topic(Name=f"payments-{ENV}-alerts")["TopicArn"])
    alarms = _alarms(
        session.client("cloudwatch"), topic_arn, alb_suffix, tg_suffix, cluster, service
    )
    return Preloaded(
        source_secret_arn=source_arn,
        target_secret_arn=target_arn,
        dms_instance_arn=instance_arn,
        dms_task_arn=task_arn,
        reverse_task_arn=reverse_arn,
        ecs_cluster=cluster,
        ecs_service=service,
        ecs_container=CONTAINER,
        task_definition_arn=taskdef_arn,
        alb_arn_suffix=alb_suffix,
        target_group_arn_suffix=tg_suffix,
        ecs_standby_service=standby,
        listener_arn=balancer.listener_arn,
        alarm_names=alarms,
        sns_topic_arn=topic_arn,
    )


def _dms(
    dms: DatabaseMigrationServiceClient, source: Database, target: Database
) -> tuple[str, str, str]:
    """The instance, the forward task (full load and CDC) and the way back's task: CDC only,
    from Aurora (the target) to the on-premises database, as infra_pulumi creates them, with
    its task settings and its source endpoints' PostgreSQLSettings (one builder for both)."""
    from infra_pulumi.dms_settings import (
        reverse_task_settings,
        source_postgres_settings,
        task_settings,
    )

    instance = dms.create_replication_instance(
        ReplicationInstanceIdentifier=f"payments-{ENV}-dms",
        ReplicationInstanceClass="dms.t3.medium",
        AllocatedStorage=50,
    )["ReplicationInstance"]
    endpoints = {}
    sides: tuple[tuple[Literal["source", "target"], Database], ...] = (
        ("source", source),
        ("target", target),
    )
    reverse: tuple[tuple[Literal["source", "target"], Database], ...] = (
        ("source", target),
        ("target", source),
    )
    for prefix, pairs in (("", sides), ("reverse-", reverse)):
        for kind, db in pairs:
            settings: dict[str, Any] = (
                {"PostgreSQLSettings": source_postgres_settings()} if kind == "source" else {}
            )
            endpoints[prefix + kind] = dms.create_endpoint(
                EndpointIdentifier=f"payments-{ENV}-{prefix}{kind}",
                EndpointType=kind,
                EngineName="postgres",
                ServerName=db.host,
                Port=db.port,
                DatabaseName=db.dbname,
                Username=db.username,
                **settings,
            )["Endpoint"]["EndpointArn"]
    mappings = {
        "rules": [
            {
                "rule-type": "selection",
                "rule-id": "1",
                "rule-name": "public",
                "object-locator": {"schema-name": "public", "table-name": "%"},
                "rule-action": "include",
            },
            {
                "rule-type": "selection",
                "rule-id": "2",
                "rule-name": "cutover-marker",
                "object-locator": {"schema-name": "migctl", "table-name": "cutover_marker"},
                "rule-action": "include",
            },
        ]
    }
    task = dms.create_replication_task(
        ReplicationTaskIdentifier=f"payments-{ENV}-task",
        SourceEndpointArn=endpoints["source"],
        TargetEndpointArn=endpoints["target"],
        ReplicationInstanceArn=instance["ReplicationInstanceArn"],
        MigrationType="full-load-and-cdc",
        TableMappings=json.dumps(mappings),
        ReplicationTaskSettings=task_settings(),
    )["ReplicationTask"]
    back = dms.create_replication_task(
        ReplicationTaskIdentifier=f"payments-{ENV}-reverse",
        SourceEndpointArn=endpoints["reverse-source"],
        TargetEndpointArn=endpoints["reverse-target"],
        ReplicationInstanceArn=instance["ReplicationInstanceArn"],
        MigrationType="cdc",
        TableMappings=json.dumps(mappings),
        ReplicationTaskSettings=reverse_task_settings(),
    )["ReplicationTask"]
    return (
        str(instance["ReplicationInstanceArn"]),
        str(task["ReplicationTaskArn"]),
        str(back["ReplicationTaskArn"]),
    )


@dataclass(frozen=True)
class _Balancer:
    alb_arn_suffix: str
    target_group_arn_suffix: str
    service_group: str  # the service's target group (ARN), where the listener forwards
    standby_group: str  # the standby service's
    listener_arn: str


def _load_balancer(ec2: EC2Client, elbv2: ElasticLoadBalancingv2Client) -> _Balancer:
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(
            VpcId=vpc, CidrBlock=f"10.42.{i}.0/24", AvailabilityZone=f"us-east-1{az}"
        )["Subnet"]["SubnetId"]
        for i, az in enumerate("ab")
    ]
    lb = elbv2.create_load_balancer(Name=f"payments-{ENV}-alb", Subnets=subnets)["LoadBalancers"][0]
    groups = [
        elbv2.create_target_group(
            Name=name,
            Protocol="HTTP",
            Port=8080,
            VpcId=vpc,
            TargetType="ip",
            HealthCheckPath="/health",
        )["TargetGroups"][0]["TargetGroupArn"]
        for name in (f"payments-{ENV}-tg", f"payments-{ENV}-tg-standby")
    ]
    listener = elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": groups[0]}],
    )["Listeners"][0]["ListenerArn"]
    return _Balancer(
        alb_arn_suffix=_arn_suffix(lb["LoadBalancerArn"], "loadbalancer/"),
        target_group_arn_suffix=_arn_suffix(groups[0], ""),
        service_group=groups[0],
        standby_group=groups[1],
        listener_arn=str(listener),
    )


def _arn_suffix(arn: str, strip: str) -> str:
    resource = arn.split(":", 5)[5]
    return resource.removeprefix(strip)


def _ecs(ecs: ECSClient, target_secret_arn: str, balancer: _Balancer) -> tuple[str, str, str, str]:
    cluster = f"payments-{ENV}"
    ecs.create_cluster(clusterName=cluster)
    taskdef = ecs.register_task_definition(
        family=f"payments-app-{ENV}",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="512",
        memory="1024",
        containerDefinitions=[
            {
                "name": CONTAINER,
                "image": APP_IMAGE,
                "essential": True,
                "portMappings": [{"containerPort": 8080}],
                "secrets": [{"name": "DB_SECRET", "valueFrom": target_secret_arn}],
            }
        ],
        tags=[
            {"key": "Environment", "value": ENV},
            {"key": "ManagedBy", "value": "migctl-sandbox"},
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    service, standby = f"payments-app-{ENV}", f"payments-app-{ENV}-standby"
    # As infra_pulumi: the standby is the service's twin behind its own target group, idle.
    for name, desired, group in (
        (service, 2, balancer.service_group),
        (standby, 0, balancer.standby_group),
    ):
        ecs.create_service(
            cluster=cluster,
            serviceName=name,
            taskDefinition=taskdef,
            desiredCount=desired,
            launchType="FARGATE",
            loadBalancers=[
                {"targetGroupArn": group, "containerName": CONTAINER, "containerPort": 8080}
            ],
        )
    return cluster, service, standby, str(taskdef)


def _alarms(cw: Any, topic: str, alb: str, tg: str, cluster: str, service: str) -> tuple[str, ...]:
    specs = [
        (
            "healthy-hosts",
            "AWS/ApplicationELB",
            "HealthyHostCount",
            {"LoadBalancer": alb, "TargetGroup": tg},
            "Minimum",
            2,
            "LessThanThreshold",
        ),
        (
            "alb-5xx",
            "AWS/ApplicationELB",
            "HTTPCode_Target_5XX_Count",
            {"LoadBalancer": alb},
            "Sum",
            10,
            "GreaterThanThreshold",
        ),
        (
            "ecs-cpu",
            "AWS/ECS",
            "CPUUtilization",
            {"ClusterName": cluster, "ServiceName": service},
            "Average",
            80,
            "GreaterThanThreshold",
        ),
    ]
    names = []
    for suffix, namespace, metric, dims, stat, threshold, op in specs:
        name = f"payments-{ENV}-{suffix}"
        cw.put_metric_alarm(
            AlarmName=name,
            Namespace=namespace,
            MetricName=metric,
            Dimensions=[{"Name": k, "Value": v} for k, v in dims.items()],
            Statistic=stat,
            Period=60,
            EvaluationPeriods=3,
            Threshold=threshold,
            ComparisonOperator=op,
            AlarmActions=[topic],
        )
        names.append(name)
    return tuple(names)
