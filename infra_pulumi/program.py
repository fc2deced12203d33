"""The Pulumi program: read the ``migctl`` config, wire the components, export outputs.

The exported names are a contract: migctl's commands resolve their targets
(alarm names, the DMS task, the ECS service, the Aurora secret) from them.
"""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_aws as aws

from infra_pulumi.components.compute import Compute, ComputeArgs
from infra_pulumi.components.database import Database, DatabaseArgs
from infra_pulumi.components.migration import Migration, MigrationArgs
from infra_pulumi.components.monitoring import Monitoring, MonitoringArgs, deployment_alarm_names
from infra_pulumi.components.network import Network, NetworkArgs
from infra_pulumi.config import NAMESPACE, StackConfig, StackConfigError, read_stack_config

ZONE_COUNT = 3
PROJECT_FILE = "Pulumi.yaml"

OUTPUT_NAMES = (
    "environment",
    "vpcId",
    "privateSubnetIds",
    "albDnsName",
    "albArnSuffix",
    "targetGroupArnSuffix",
    "ecsClusterName",
    "ecsServiceName",
    "ecsContainerName",
    "ecsStandbyServiceName",
    "albListenerArn",
    "auroraClusterArn",
    "auroraEndpoint",
    "auroraReaderEndpoint",
    "auroraSecretArn",
    "dmsReplicationInstanceArn",
    "dmsReplicationTaskArn",
    "dmsReverseTaskArn",
    "validationFunctionName",
    "snsTopicArn",
    "alarmNames",
)


def pulumi_program() -> None:
    """Build the whole stack for the current Pulumi stack and config."""
    cfg = read_stack_config(pulumi.Config(NAMESPACE), pulumi.get_stack())
    region = aws.get_region().region
    zones = _zones(cfg)
    lambda_package = _lambda_package(cfg.lambda_package)
    if cfg.source is None:
        pulumi.log.warn(
            "no source database configured (migctl:sourceDbHost and migctl:sourceSecretArn): "
            "the DMS endpoints and replication task are not created"
        )
    tags = cfg.tags
    env = cfg.environment

    network = Network(
        "network",
        NetworkArgs(
            environment=env,
            region=region,
            vpc_cidr=cfg.vpc_cidr,
            availability_zones=zones,
            nat_per_az=cfg.nat_gateways == "per-az",
            app_port=cfg.container_port,
            log_retention_days=cfg.log_retention_days,
            tags=tags,
        ),
    )
    database = Database(
        "database",
        DatabaseArgs(
            environment=env,
            is_production=cfg.is_production,
            subnet_ids=network.isolated_subnet_ids,
            security_group_id=network.db_sg_id,
            engine_version=cfg.db_engine_version,
            instance_class=cfg.db_instance_class,
            instance_count=cfg.db_instance_count,
            db_name=cfg.db_name,
            master_username=cfg.db_master_username,
            backup_retention_days=cfg.backup_retention_days,
            tags=tags,
        ),
    )
    compute = Compute(
        "compute",
        ComputeArgs(
            environment=env,
            is_production=cfg.is_production,
            region=region,
            vpc_id=network.vpc.id,
            public_subnet_ids=network.public_subnet_ids,
            private_subnet_ids=network.private_subnet_ids,
            alb_security_group_id=network.alb_sg_id,
            app_security_group_id=network.app_sg_id,
            image=cfg.container_image,
            container_name=cfg.container_name,
            container_port=cfg.container_port,
            cpu=cfg.task_cpu,
            memory=cfg.task_memory,
            desired_count=cfg.desired_count,
            health_check_path=cfg.health_check_path,
            certificate_arn=cfg.certificate_arn,
            db_secret_arn=database.secret_arn,
            db_kms_key_arn=database.kms_key.arn,
            db_host=database.endpoint,
            db_port=database.port,
            db_name=cfg.db_name,
            deployment_alarm_names=deployment_alarm_names(env),
            log_retention_days=cfg.log_retention_days,
            tags=tags,
        ),
    )
    migration = Migration(
        "migration",
        MigrationArgs(
            environment=env,
            is_production=cfg.is_production,
            region=region,
            subnet_ids=network.private_subnet_ids,
            dms_security_group_id=network.dms_sg_id,
            lambda_security_group_id=network.lambda_sg_id,
            instance_class=cfg.dms_instance_class,
            allocated_storage=cfg.dms_allocated_storage,
            engine_version=cfg.dms_engine_version,
            create_service_roles=cfg.dms_create_service_roles,
            schemas=cfg.migration_schemas,
            source=cfg.source,
            target_host=database.endpoint,
            target_port=database.port,
            target_db_name=cfg.db_name,
            target_secret_arn=database.secret_arn,
            kms_key_arn=database.kms_key.arn,
            lambda_package=lambda_package,
            log_retention_days=cfg.log_retention_days,
            tags=tags,
            lobs=cfg.lobs,
        ),
    )
    task_arn = None if migration.task is None else migration.task.replication_task_arn
    monitoring = Monitoring(
        "monitoring",
        MonitoringArgs(
            environment=env,
            alarm_email=cfg.alarm_email,
            alb_arn_suffix=compute.alb_arn_suffix,
            target_group_arn_suffix=compute.target_group_arn_suffix,
            desired_count=cfg.desired_count,
            ecs_cluster_name=compute.cluster_name,
            ecs_service_name=compute.service_name,
            aurora_cluster_identifier=database.cluster_identifier,
            dms_instance_identifier=migration.instance_identifier,
            dms_task_arn=task_arn,
            lambda_function_name=migration.function_name,
            p99_latency_seconds=cfg.p99_latency_alarm_seconds,
            cdc_latency_seconds=cfg.cdc_latency_alarm_seconds,
            tags=tags,
        ),
    )

    pulumi.export("environment", env)
    pulumi.export("vpcId", network.vpc.id)
    pulumi.export("privateSubnetIds", network.private_subnet_ids)
    pulumi.export("albDnsName", compute.alb_dns_name)
    pulumi.export("albArnSuffix", compute.alb_arn_suffix)
    pulumi.export("targetGroupArnSuffix", compute.target_group_arn_suffix)
    pulumi.export("ecsClusterName", compute.cluster_name)
    pulumi.export("ecsServiceName", compute.service_name)
    pulumi.export("ecsContainerName", compute.container_name)
    pulumi.export("ecsStandbyServiceName", compute.standby_service_name)
    pulumi.export("albListenerArn", compute.listener_arn)
    pulumi.export("auroraClusterArn", database.cluster.arn)
    pulumi.export("auroraEndpoint", database.endpoint)
    pulumi.export("auroraReaderEndpoint", database.reader_endpoint)
    pulumi.export("auroraSecretArn", database.secret_arn)
    pulumi.export(
        "dmsReplicationInstanceArn", migration.replication_instance.replication_instance_arn
    )
    if task_arn is not None:
        pulumi.export("dmsReplicationTaskArn", task_arn)
    if migration.reverse_task is not None:
        pulumi.export("dmsReverseTaskArn", migration.reverse_task.replication_task_arn)
    pulumi.export("validationFunctionName", migration.function_name)
    pulumi.export("snsTopicArn", monitoring.topic.arn)
    pulumi.export("alarmNames", monitoring.alarm_names)


def _zones(cfg: StackConfig) -> list[str]:
    """Three AZs: from config, else the first three available in the region."""
    if cfg.availability_zones:
        if len(cfg.availability_zones) != ZONE_COUNT:
            raise StackConfigError(
                f"migctl:availabilityZones must name exactly {ZONE_COUNT} zones, "
                f"not {len(cfg.availability_zones)}"
            )
        return list(cfg.availability_zones)
    names = list(aws.get_availability_zones(state="available").names)
    if len(names) < ZONE_COUNT:
        raise StackConfigError(f"the region has {len(names)} available zones; {ZONE_COUNT} needed")
    return names[:ZONE_COUNT]


def project_root() -> Path:
    """The Pulumi project folder, that of Pulumi.yaml: as the engine says, else (under mocks)
    the nearest folder from the current one up that holds one, else the current folder."""
    root = pulumi.get_root_directory()
    if root and (Path(root) / PROJECT_FILE).is_file():
        return Path(root)
    here = Path.cwd()
    return next((d for d in (here, *here.parents) if (d / PROJECT_FILE).is_file()), here)


def _lambda_package(path: str) -> str:
    """The built zip, a relative path being relative to the Pulumi project folder (migctl
    passes an absolute one); missing is a warning in a preview and an error in an update."""
    given = Path(path).expanduser()
    resolved = given if given.is_absolute() else project_root() / given
    if not resolved.is_file():
        message = (
            f"the validation Lambda package {resolved} does not exist: "
            "run `migctl lambda build` first"
        )
        if not pulumi.runtime.is_dry_run():
            raise StackConfigError(message)
        pulumi.log.warn(message)
    return str(resolved)
