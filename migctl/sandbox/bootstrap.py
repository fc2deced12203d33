"""``migctl sandbox up``: two PostgreSQL clusters, a local AWS endpoint, and the files that point at them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from migctl.errors import OperationalError
from migctl.sandbox import environment as env
from migctl.sandbox import preload, schema
from migctl.sandbox.replication import REVERSE_NAME, REVERSE_ROLE, Replication

if TYPE_CHECKING:
    import boto3

# Logical replication on the source, and quick status messages from the
# target, so that the lag the sandbox reports is the real one within a second.
SOURCE_SETTINGS = {
    "wal_level": "logical",
    "max_replication_slots": "10",
    "max_wal_senders": "10",
    "max_prepared_transactions": "10",  # an application with XA may prepare; the freeze sees it
    "wal_receiver_status_interval": "1s",  # the reverse replication's subscriber
}
# The target is a publisher too: the way back (reverse replication) reads it from a slot.
TARGET_SETTINGS = {
    "wal_receiver_status_interval": "1s",
    "max_logical_replication_workers": "8",
    "wal_level": "logical",
    "max_replication_slots": "10",
    "max_wal_senders": "10",
}


@dataclass(frozen=True)
class SandboxUp:
    dir: str
    config_path: str
    env_path: str
    aws_url: str
    rows: dict[str, int]
    traffic_pid: int | None


def up(
    directory: Path,
    *,
    rows: int,
    traffic: bool,
    progress: env.Progress,
    task_start_seconds: float = 2.0,
) -> SandboxUp:
    """Start everything; on any failure stop what did start and re-raise."""
    directory = directory.resolve()
    env.ensure_free(directory)
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    state = env.SandboxState(dir=str(directory), rows=rows, task_start_seconds=task_start_seconds)
    state.save()
    try:
        source = env.start_postgres(state, "source", SOURCE_SETTINGS, progress)
        target = env.start_postgres(state, "target", TARGET_SETTINGS, progress)
        state.source_port, state.target_port = source.port, target.port
        state.save()
        counts = _databases(state, rows, progress)
        env.start_aws(state, progress)
        progress("creating the DMS task, ECS service, ALB, alarms and secrets")
        loaded = preload.preload(
            env.aws_session(state),
            preload.Database("127.0.0.1", state.source_port, env.DBNAME, "postgres"),
            preload.Database("127.0.0.1", state.target_port, env.DBNAME, "postgres"),
        )
        state.outputs = loaded.outputs()
        state.save()
        _wait_service_steady(env.aws_session(state), loaded, progress)
        config_path, env_path = _write_files(state, loaded)
        traffic_pid = env.start_traffic(directory).pid if traffic else None
    except BaseException as exc:
        env.down(directory)
        raise exc from None
    return SandboxUp(
        str(directory), str(config_path), str(env_path), state.aws_url, counts, traffic_pid
    )


def _wait_service_steady(
    session: boto3.Session, loaded: preload.Preloaded, progress: env.Progress
) -> None:
    """Return a steady environment: the service's first deployment has completed."""
    progress("waiting for the ECS service's first deployment")
    ecs = session.client("ecs")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        service = ecs.describe_services(cluster=loaded.ecs_cluster, services=[loaded.ecs_service])[
            "services"
        ][0]
        if all(d.get("rolloutState") == "COMPLETED" for d in service["deployments"]):
            return
        time.sleep(0.25)
    raise OperationalError("the sandbox's ECS service did not reach a steady state within 60s")


def _databases(state: env.SandboxState, rows: int, progress: env.Progress) -> dict[str, int]:
    for dsn_of in (state.source_dsn, state.target_dsn):
        admin = dsn_of().replace(f"dbname={env.DBNAME}", "dbname=postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(env.DBNAME)))
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(env.APP_ROLE)))
    progress(f"creating the payments schema and seeding {rows:,} payments on the source")
    with psycopg.connect(state.source_dsn()) as conn:
        schema.create_schema(conn)
        _grant_app(conn)
        counts = schema.seed(conn, rows)
    with psycopg.connect(state.target_dsn()) as conn:
        schema.create_schema(conn)
        _grant_app(conn)
    with psycopg.connect(state.source_dsn(), autocommit=True) as conn:
        # The reverse task's apply runs as this role: a subscription's owner is a superuser.
        conn.execute(sql.SQL("CREATE ROLE {} SUPERUSER LOGIN").format(sql.Identifier(REVERSE_ROLE)))
    with psycopg.connect(state.target_dsn(), autocommit=True) as conn:
        Replication(state.target_dsn(), state.source_dsn(), name=REVERSE_NAME).publish(conn)
    return counts


def _grant_app(conn: Any) -> None:
    role = sql.Identifier(env.APP_ROLE)
    with conn.transaction():
        conn.execute(
            sql.SQL(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}"
            ).format(role)
        )
        conn.execute(
            sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(role)
        )


def _write_files(state: env.SandboxState, loaded: preload.Preloaded) -> tuple[Path, Path]:
    directory = state.path
    config = directory / "migctl.toml"
    alarms = ", ".join(json.dumps(n) for n in loaded.alarm_names)
    config.write_text(
        f"""# Written by `migctl sandbox up`: every migctl command works against the sandbox with it.
[project]
environment = "{preload.ENV}"
region = "{env.AWS_ENV["AWS_REGION"]}"

[source]
secret_arn = "{loaded.source_secret_arn}"

[target]
secret_arn = "{loaded.target_secret_arn}"

[alarms]
prefix = "payments-{preload.ENV}-"

[validate]
jobs = 2

[dms]
task = "{loaded.dms_task_arn}"
metric_period_seconds = 5
stable_for = 2

[ecs]
cluster = "{loaded.ecs_cluster}"
service = "{loaded.ecs_service}"
container = "{loaded.ecs_container}"
bake_seconds = 10
interval_seconds = 1
timeout_seconds = 120
gate_alarms = [{alarms}]

[cutover]
app_roles = ["{env.APP_ROLE}"]
sns_topic_arn = "{loaded.sns_topic_arn}"
image = "payments-app:2.0.0-aurora"
reverse_task = "{loaded.reverse_task_arn}"
reverse_slot = "{REVERSE_NAME}"
reverse_plugin = "pgoutput"  # the sandbox's reverse task is native logical replication
reverse_role = "{REVERSE_ROLE}"
"""
    )
    env_file = directory / "sandbox.env"
    lines = {
        **env.AWS_ENV,
        "AWS_ENDPOINT_URL": state.aws_url,
        "MIGCTL_CONFIG": str(config),
        "MIGCTL_SANDBOX_DIR": str(directory),
    }
    # KEY=value lines: `set -a; . sandbox.env; set +a` exports them in a shell.
    env_file.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    cache = directory / ".migctl" / f"outputs-{preload.ENV}.json"
    cache.parent.mkdir(exist_ok=True)
    cache.write_text(json.dumps(loaded.outputs(), indent=2))
    return config, env_file
