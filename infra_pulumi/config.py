"""Typed stack configuration, read from the ``migctl`` config namespace.

Every key, its default outside production and in production, lives in
:data:`KEYS`; docs/infra.md lists the same keys (a test keeps them in step).
Production is the environment named ``prod`` or ``production``, the same rule
migctl's own settings use.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Literal

import pulumi

from infra_pulumi.dms_settings import (
    DEFAULT_LOB_MAX_SIZE_KB,
    DEFAULT_LOB_MODE,
    LOB_MODES,
    MAX_LOB_MAX_SIZE_KB,
    LobSettings,
)

NAMESPACE = "migctl"
PROJECT = "migctl"
PRODUCTION_NAMES = frozenset({"prod", "production"})
ENVIRONMENT_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
MAX_ENVIRONMENT_LENGTH = 12  # ALB and target group names stop at 32 characters
FARGATE_CPU_UNITS = (256, 512, 1024, 2048, 4096, 8192, 16384)

NatMode = Literal["single", "per-az"]


class StackConfigError(pulumi.RunError):
    """A config value is missing, malformed or inconsistent (no traceback is shown)."""


@dataclass(frozen=True)
class Key:
    """One config key with its default outside production and in production."""

    name: str
    test: Any
    prod: Any
    help: str


# The single source of defaults. ``None`` means "not set" (the feature is off),
# and containerImage has no default at all: it is required.
KEYS: tuple[Key, ...] = (
    Key("environment", "<stack name>", "<stack name>", "environment suffix of every name"),
    Key("vpcCidr", "10.40.0.0/16", "10.40.0.0/16", "VPC CIDR, at most /20"),
    Key("availabilityZones", None, None, "three AZ names; looked up when unset"),
    Key("natGateways", "single", "per-az", "single | per-az"),
    Key("containerImage", "<required>", "<required>", "image of the payment service"),
    Key("containerName", "payment-service", "payment-service", "container name in the task"),
    Key("containerPort", 8080, 8080, "port the container listens on"),
    Key("taskCpu", 512, 1024, "Fargate CPU units per task"),
    Key("taskMemory", 1024, 2048, "Fargate memory (MiB) per task"),
    Key("desiredCount", 1, 3, "running tasks"),
    Key("healthCheckPath", "/actuator/health", "/actuator/health", "target group health check"),
    Key("certificateArn", None, None, "ACM certificate: HTTPS when set, else HTTP"),
    Key("dbEngineVersion", "16.4", "16.4", "Aurora PostgreSQL engine version"),
    Key("dbInstanceClass", "db.t4g.medium", "db.r6g.large", "Aurora instance class"),
    Key("dbInstanceCount", 1, 2, "Aurora instances (writer + readers)"),
    Key("dbName", "payments", "payments", "database created on Aurora"),
    Key("dbMasterUsername", "migctl_admin", "migctl_admin", "master user (password managed)"),
    Key("backupRetentionDays", 7, 30, "Aurora automated backups"),
    Key("logRetentionDays", 14, 90, "retention of every log group"),
    Key("dmsInstanceClass", "dms.t3.medium", "dms.r5.large", "DMS replication instance class"),
    Key("dmsAllocatedStorage", 50, 100, "DMS instance storage (GB)"),
    Key("dmsEngineVersion", None, None, "DMS engine version; AWS default when unset"),
    Key("dmsCreateServiceRoles", False, False, "create the account-wide dms-vpc-role"),
    Key("migrationSchemas", ["public"], ["public"], "schemas the DMS task replicates"),
    Key("lobMode", DEFAULT_LOB_MODE, DEFAULT_LOB_MODE, "DMS LOB mode: limited | full"),
    Key(
        "lobMaxSizeKb",
        DEFAULT_LOB_MAX_SIZE_KB,
        DEFAULT_LOB_MAX_SIZE_KB,
        "largest LOB (KB) in limited mode; a longer one fails the task",
    ),
    Key("sourceDbHost", None, None, "on-prem PostgreSQL host (with sourceSecretArn)"),
    Key("sourceDbPort", 5432, 5432, "on-prem PostgreSQL port"),
    Key("sourceDbName", "payments", "payments", "on-prem database name"),
    Key("sourceSecretArn", None, None, "secret with the source's host/port/user/password"),
    Key("sourceSecretKmsKeyArn", None, None, "CMK of the source secret, if any"),
    Key(
        "sourceReverseSecretArn",
        None,
        None,
        "secret of the role the reverse task writes to the source as (default: sourceSecretArn)",
    ),
    Key("reverseSlotName", "migctl_reverse", "migctl_reverse", "Aurora slot of the reverse task"),
    Key("alarmEmail", None, None, "e-mail subscribed to the alarm topic"),
    Key("lambdaPackage", "dist/validation-lambda.zip", "dist/validation-lambda.zip", "zip path"),
    Key("cdcLatencyAlarmSeconds", 60, 30, "CDCLatencyTarget alarm threshold"),
    Key("p99LatencyAlarmSeconds", 2.0, 1.0, "ALB p99 TargetResponseTime threshold"),
)
DEFAULTS_TEST = {k.name: k.test for k in KEYS}
DEFAULTS_PROD = {k.name: k.prod for k in KEYS}


@dataclass(frozen=True)
class SourceDatabase:
    """The on-prem PostgreSQL that DMS reads from; credentials stay in its secret."""

    host: str
    port: int
    dbname: str
    secret_arn: str
    kms_key_arn: str | None
    # The way back: the reverse task writes to the source with this secret's role (the one
    # migctl's [cutover] reverse_role names), reading Aurora's slot reverse_slot.
    reverse_secret_arn: str | None = None
    reverse_slot: str = "migctl_reverse"


@dataclass(frozen=True)
class StackConfig:
    environment: str
    is_production: bool
    vpc_cidr: str
    availability_zones: tuple[str, ...]
    nat_gateways: NatMode
    container_image: str
    container_name: str
    container_port: int
    task_cpu: int
    task_memory: int
    desired_count: int
    health_check_path: str
    certificate_arn: str | None
    db_engine_version: str
    db_instance_class: str
    db_instance_count: int
    db_name: str
    db_master_username: str
    backup_retention_days: int
    log_retention_days: int
    dms_instance_class: str
    dms_allocated_storage: int
    dms_engine_version: str | None
    dms_create_service_roles: bool
    migration_schemas: tuple[str, ...]
    lobs: LobSettings
    source: SourceDatabase | None
    alarm_email: str | None
    lambda_package: str
    cdc_latency_alarm_seconds: int
    p99_latency_alarm_seconds: float

    @property
    def tags(self) -> dict[str, str]:
        return {"Environment": self.environment, "Project": PROJECT, "ManagedBy": "pulumi"}


def is_production(environment: str) -> bool:
    return environment in PRODUCTION_NAMES


def read_stack_config(cfg: pulumi.Config, stack: str) -> StackConfig:
    """Read and check every key; a bad value is a :class:`StackConfigError`."""
    environment = cfg.get("environment") or stack
    _check_environment(environment)
    prod = is_production(environment)
    defaults = DEFAULTS_PROD if prod else DEFAULTS_TEST

    def text(key: str) -> str:
        return cfg.get(key) or str(defaults[key])

    def number(key: str) -> int:
        value = cfg.get_int(key)
        return int(defaults[key]) if value is None else value

    nat = text("natGateways")
    if nat not in ("single", "per-az"):
        raise StackConfigError(f"migctl:natGateways must be 'single' or 'per-az', not {nat!r}")
    image = cfg.get("containerImage")
    if not image:
        raise StackConfigError(
            "migctl:containerImage is required (no placeholder image is deployed): "
            "pulumi config set migctl:containerImage <registry>/<repo>:<tag>"
        )
    task_cpu = number("taskCpu")
    if task_cpu not in FARGATE_CPU_UNITS:
        raise StackConfigError(f"migctl:taskCpu must be one of {FARGATE_CPU_UNITS}")
    vpc_cidr = text("vpcCidr")
    _check_cidr(vpc_cidr)
    latency = cfg.get_float("p99LatencyAlarmSeconds")
    return StackConfig(
        environment=environment,
        is_production=prod,
        vpc_cidr=vpc_cidr,
        availability_zones=_string_list(cfg, "availabilityZones", []),
        nat_gateways="per-az" if nat == "per-az" else "single",
        container_image=image,
        container_name=text("containerName"),
        container_port=number("containerPort"),
        task_cpu=task_cpu,
        task_memory=number("taskMemory"),
        desired_count=number("desiredCount"),
        health_check_path=text("healthCheckPath"),
        certificate_arn=cfg.get("certificateArn"),
        db_engine_version=text("dbEngineVersion"),
        db_instance_class=text("dbInstanceClass"),
        db_instance_count=number("dbInstanceCount"),
        db_name=text("dbName"),
        db_master_username=text("dbMasterUsername"),
        backup_retention_days=number("backupRetentionDays"),
        log_retention_days=number("logRetentionDays"),
        dms_instance_class=text("dmsInstanceClass"),
        dms_allocated_storage=number("dmsAllocatedStorage"),
        dms_engine_version=cfg.get("dmsEngineVersion"),
        dms_create_service_roles=bool(cfg.get_bool("dmsCreateServiceRoles")),
        migration_schemas=_string_list(cfg, "migrationSchemas", defaults["migrationSchemas"]),
        lobs=_read_lobs(text("lobMode"), cfg.get("lobMaxSizeKb"), defaults),
        source=_read_source(cfg, defaults),
        alarm_email=cfg.get("alarmEmail"),
        lambda_package=text("lambdaPackage"),
        cdc_latency_alarm_seconds=number("cdcLatencyAlarmSeconds"),
        p99_latency_alarm_seconds=float(defaults["p99LatencyAlarmSeconds"])
        if latency is None
        else latency,
    )


def _check_environment(environment: str) -> None:
    if len(environment) > MAX_ENVIRONMENT_LENGTH or not ENVIRONMENT_PATTERN.match(environment):
        raise StackConfigError(
            f"environment {environment!r} must be lowercase letters, digits and single "
            f"hyphens, start with a letter, and be at most {MAX_ENVIRONMENT_LENGTH} characters "
            "(set migctl:environment or name the stack accordingly)"
        )


def _check_cidr(cidr: str) -> None:
    try:
        network = ipaddress.ip_network(cidr)
    except ValueError:
        raise StackConfigError(f"migctl:vpcCidr {cidr!r} is not a CIDR block") from None
    if network.version != 4 or network.prefixlen > 20:
        raise StackConfigError(f"migctl:vpcCidr {cidr!r} must be an IPv4 block of /20 or larger")


def _read_lobs(mode: str, max_size: str | None, defaults: dict[str, Any]) -> LobSettings:
    """lobMode and lobMaxSizeKb (read as text: a YAML 32.5 or "32KB" is refused, not cut)."""
    if mode not in LOB_MODES:
        raise StackConfigError(
            f"migctl:lobMode must be {' or '.join(repr(m) for m in LOB_MODES)}, not {mode!r}"
        )
    size = str(defaults["lobMaxSizeKb"]) if max_size is None else max_size.strip()
    if not size.isdigit() or not 1 <= int(size) <= MAX_LOB_MAX_SIZE_KB:
        raise StackConfigError(
            f"migctl:lobMaxSizeKb must be a whole number of KB from 1 to {MAX_LOB_MAX_SIZE_KB} "
            f"(DMS's limit), not {size!r}"
        )
    return LobSettings(mode="full" if mode == "full" else "limited", max_size_kb=int(size))


def _string_list(cfg: pulumi.Config, key: str, default: list[str]) -> tuple[str, ...]:
    value = cfg.get_object(key)
    if value is None:
        return tuple(default)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise StackConfigError(f"migctl:{key} must be a list of strings")
    return tuple(value)


def _read_source(cfg: pulumi.Config, defaults: dict[str, Any]) -> SourceDatabase | None:
    """The source database, or None when neither its host nor its secret is configured."""
    host = cfg.get("sourceDbHost")
    secret_arn = cfg.get("sourceSecretArn")
    if not host and not secret_arn:
        return None
    if not host or not secret_arn:
        missing = "sourceDbHost" if not host else "sourceSecretArn"
        raise StackConfigError(
            f"migctl:{missing} is missing: set both sourceDbHost and sourceSecretArn, or neither"
        )
    port = cfg.get_int("sourceDbPort")
    return SourceDatabase(
        host=host,
        port=int(defaults["sourceDbPort"]) if port is None else port,
        dbname=cfg.get("sourceDbName") or str(defaults["sourceDbName"]),
        secret_arn=secret_arn,
        kms_key_arn=cfg.get("sourceSecretKmsKeyArn"),
        reverse_secret_arn=cfg.get("sourceReverseSecretArn"),
        reverse_slot=cfg.get("reverseSlotName") or str(defaults["reverseSlotName"]),
    )
