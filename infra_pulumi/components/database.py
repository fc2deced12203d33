"""Database: Aurora PostgreSQL, encrypted with its own KMS key, password managed by RDS.

The master password never passes through Pulumi: ``manage_master_user_password``
makes RDS create and rotate it in Secrets Manager, and consumers read the
secret at run time. ``rds.logical_replication=1`` keeps a reverse (Aurora to
on-prem) replication task possible as a fallback after cutover.

Outside production the cluster is fully destroyable (no deletion protection,
no final snapshot); production keeps both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

ENGINE = "aurora-postgresql"


@dataclass(frozen=True)
class DatabaseArgs:
    environment: str
    is_production: bool
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    engine_version: str
    instance_class: str
    instance_count: int
    db_name: str
    master_username: str
    backup_retention_days: int
    tags: Mapping[str, str]


def parameter_group_family(engine_version: str) -> str:
    """``16.4`` -> ``aurora-postgresql16``."""
    return f"{ENGINE}{engine_version.split('.', maxsplit=1)[0]}"


class Database(pulumi.ComponentResource):
    """The Aurora cluster, its instances, its key, subnet group and parameter group."""

    def __init__(
        self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("migctl:infra:Database", name, None, opts)
        env = args.environment
        prod = args.is_production
        child = pulumi.ResourceOptions(parent=self)

        self.kms_key = aws.kms.Key(
            f"{name}-key-{env}",
            description=f"migctl {env}: Aurora storage, its master secret and Performance Insights",
            enable_key_rotation=True,
            deletion_window_in_days=30 if prod else 7,
            tags=args.tags,
            opts=child,
        )
        aws.kms.Alias(
            f"{name}-key-alias-{env}",
            name=f"alias/migctl-aurora-{env}",
            target_key_id=self.kms_key.key_id,
            opts=child,
        )
        subnet_group = aws.rds.SubnetGroup(
            f"{name}-subnets-{env}",
            name=f"migctl-aurora-{env}",
            description=f"migctl {env}: isolated subnets for Aurora",
            subnet_ids=args.subnet_ids,
            tags=args.tags,
            opts=child,
        )
        parameters = aws.rds.ClusterParameterGroup(
            f"{name}-params-{env}",
            name=f"migctl-aurora-{env}",
            family=parameter_group_family(args.engine_version),
            description=f"migctl {env}: logical replication on for a reverse-replication fallback",
            parameters=[
                aws.rds.ClusterParameterGroupParameterArgs(
                    name="rds.logical_replication", value="1", apply_method="pending-reboot"
                ),
                aws.rds.ClusterParameterGroupParameterArgs(
                    name="rds.force_ssl", value="1", apply_method="pending-reboot"
                ),
            ],
            tags=args.tags,
            opts=child,
        )
        identifier = f"migctl-aurora-{env}"
        self.cluster = aws.rds.Cluster(
            f"{name}-cluster-{env}",
            cluster_identifier=identifier,
            engine=ENGINE,
            engine_version=args.engine_version,
            database_name=args.db_name,
            master_username=args.master_username,
            manage_master_user_password=True,
            master_user_secret_kms_key_id=self.kms_key.arn,
            iam_database_authentication_enabled=True,
            storage_encrypted=True,
            kms_key_id=self.kms_key.arn,
            db_subnet_group_name=subnet_group.name,
            db_cluster_parameter_group_name=parameters.name,
            vpc_security_group_ids=[args.security_group_id],
            backup_retention_period=args.backup_retention_days,
            preferred_backup_window="03:00-04:00",
            copy_tags_to_snapshot=True,
            enabled_cloudwatch_logs_exports=["postgresql"],
            deletion_protection=prod,
            skip_final_snapshot=not prod,
            final_snapshot_identifier=f"{identifier}-final" if prod else None,
            apply_immediately=not prod,
            tags=args.tags,
            opts=child,
        )
        self.instances = [
            aws.rds.ClusterInstance(
                f"{name}-instance-{index}-{env}",
                identifier=f"{identifier}-{index}",
                cluster_identifier=self.cluster.id,
                engine=aws.rds.EngineType.AURORA_POSTGRESQL,
                engine_version=args.engine_version,
                instance_class=args.instance_class,
                db_subnet_group_name=subnet_group.name,
                publicly_accessible=False,
                performance_insights_enabled=True,
                performance_insights_kms_key_id=self.kms_key.arn,
                performance_insights_retention_period=7,
                auto_minor_version_upgrade=True,
                apply_immediately=not prod,
                tags=args.tags,
                opts=child,
            )
            for index in range(1, args.instance_count + 1)
        ]
        self.cluster_identifier: pulumi.Output[str] = self.cluster.cluster_identifier
        self.endpoint: pulumi.Output[str] = self.cluster.endpoint
        self.reader_endpoint: pulumi.Output[str] = self.cluster.reader_endpoint
        self.port: pulumi.Output[int] = self.cluster.port
        self.secret_arn: pulumi.Output[str] = self.cluster.master_user_secrets.apply(
            lambda secrets: secrets[0].secret_arn or ""
        )
        self.register_outputs(
            {
                "clusterArn": self.cluster.arn,
                "clusterIdentifier": self.cluster_identifier,
                "endpoint": self.endpoint,
                "readerEndpoint": self.reader_endpoint,
                "secretArn": self.secret_arn,
                "kmsKeyArn": self.kms_key.arn,
            }
        )
