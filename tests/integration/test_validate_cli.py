"""`migctl validate` end to end: exit codes 0/1/2/3, the JSON shape, config defaults, redaction."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from migctl.sandbox.postgres import free_port
from tests.cli_support import Cli

TABLE_KEYS = {
    "table",
    "status",
    "source_rows",
    "target_rows",
    "missing_in_target_count",
    "missing_in_source_count",
    "changed_count",
    "missing_in_target",
    "missing_in_source",
    "changed",
    "schema_differences",
}
SEQUENCE_KEYS = {"sequence", "source_last_value", "target_last_value", "status"}


def setup(pg_pair: Any) -> None:
    pg_pair.execute_both(
        "CREATE TABLE ledger (id bigserial PRIMARY KEY, amount numeric(12,2));"
        "INSERT INTO ledger (amount) SELECT g FROM generate_series(1, 300) g"
    )
    with pg_pair.target_conn() as conn:
        conn.execute("SELECT setval('ledger_id_seq', 300)")


def test_exit_0_when_everything_matches_and_the_json_shape(pg_pair: Any, cli: Cli) -> None:
    setup(pg_pair)
    result = cli(
        "--output",
        "json",
        "validate",
        "--source",
        pg_pair.source_dsn,
        "--target",
        pg_pair.target_dsn,
    )
    assert result.code == 0, result.stderr
    payload = result.json()
    assert {"ok", "source", "target", "duration_seconds", "tables", "sequences"} <= set(payload)
    assert payload["ok"] is True
    (ledger,) = payload["tables"]
    assert TABLE_KEYS <= set(ledger)
    assert (ledger["table"], ledger["status"], ledger["source_rows"], ledger["target_rows"]) == (
        "public.ledger",
        "match",
        300,
        300,
    )
    (seq,) = payload["sequences"]
    assert SEQUENCE_KEYS <= set(seq)
    assert (seq["sequence"], seq["status"], seq["source_last_value"], seq["target_last_value"]) == (
        "public.ledger_id_seq",
        "match",
        300,
        300,
    )


def test_exit_1_on_a_difference_with_keys_as_json_arrays(pg_pair: Any, cli: Cli) -> None:
    setup(pg_pair)
    with pg_pair.target_conn() as conn:
        conn.execute(
            "DELETE FROM ledger WHERE id = 11; UPDATE ledger SET amount = 0 WHERE id IN (5, 123)"
        )
        conn.execute("INSERT INTO ledger VALUES (300001, 1)")
    result = cli(
        "--output",
        "json",
        "validate",
        "--source",
        pg_pair.source_dsn,
        "--target",
        pg_pair.target_dsn,
        "--chunk-rows",
        "25",
        "--max-keys",
        "1",
    )
    assert result.code == 1, result.stderr
    payload = result.json()
    (ledger,) = payload["tables"]
    assert payload["ok"] is False and ledger["status"] == "mismatch"
    assert (ledger["missing_in_target"], ledger["missing_in_source"], ledger["changed"]) == (
        [[11]],
        [[300001]],
        [[5]],
    )
    assert (
        ledger["missing_in_target_count"],
        ledger["missing_in_source_count"],
        ledger["changed_count"],
    ) == (1, 1, 2)
    assert (ledger["source_rows"], ledger["target_rows"]) == (300, 300)


def test_table_output_and_config_defaults(pg_pair: Any, cli: Cli, tmp_path: Path) -> None:
    setup(pg_pair)
    pg_pair.execute_both("CREATE SCHEMA other; CREATE TABLE other.t (id int PRIMARY KEY)")
    (tmp_path / "migctl.toml").write_text(
        f"[source]\ndsn = {json.dumps(pg_pair.source_dsn)}\n[target]\ndsn = {json.dumps(pg_pair.target_dsn)}\n"
        '[validate]\nschemas = ["other"]\nchunk_rows = 7\n'
    )
    result = cli("validate")
    assert result.code == 0, result.stderr
    assert "other.t" in result.stdout and "public.ledger" not in result.stdout
    assert "match" in result.stdout


def test_exit_2_for_an_unknown_table_or_a_bad_dsn(pg_pair: Any, cli: Cli) -> None:
    setup(pg_pair)
    unknown = cli(
        "validate",
        "--source",
        pg_pair.source_dsn,
        "--target",
        pg_pair.target_dsn,
        "--table",
        "public.nope",
    )
    assert unknown.code == 2
    assert (
        "table 'public.nope' matched no table" in unknown.stderr
        and "Traceback" not in unknown.stderr
    )
    bad = cli("validate", "--source", "host=127.0.0.1 port", "--target", pg_pair.target_dsn)
    assert bad.code == 2, bad.stderr
    assert "bad DSN" in bad.stderr


def test_a_malformed_dsn_is_exit_2_and_never_shows_the_password(pg_pair: Any, cli: Cli) -> None:
    from tests.unit.test_redact import malformed

    password = "Pw" + secrets.token_hex(8)
    for dsn in malformed(password):
        for verbosity in ((), ("-vv",)):
            result = cli(*verbosity, "validate", "--source", dsn, "--target", pg_pair.target_dsn)
            output = result.stdout + result.stderr
            assert result.code == 2, (dsn, result.stderr)
            assert "bad DSN" in result.stderr and "internal error" not in result.stderr
            assert password[:6] not in output and password[-6:] not in output, (dsn, output)


def test_exit_3_when_a_database_is_unreachable_and_no_password_leaks(
    pg_pair: Any, cli: Cli
) -> None:
    setup(pg_pair)
    password = secrets.token_urlsafe(12)
    dead = f"postgresql://app:{password}@127.0.0.1:{free_port()}/pay?connect_timeout=3"
    result = cli("--output", "json", "validate", "--source", pg_pair.source_dsn, "--target", dead)
    assert result.code == 3
    assert "cannot connect to postgresql://app:***@127.0.0.1" in result.stderr
    assert password not in result.stdout + result.stderr


def test_passwords_are_redacted_in_the_json(pg_pair: Any, cli: Cli) -> None:
    setup(pg_pair)
    password = secrets.token_urlsafe(12)  # trust auth on the harness accepts any password
    source = f"postgresql://postgres:{password}@127.0.0.1:{pg_pair.source.port}/{pg_pair.dbname}?sslmode=disable"
    result = cli("--output", "json", "validate", "--source", source, "--target", pg_pair.target_dsn)
    assert result.code == 0, result.stderr
    payload = result.json()
    assert (
        payload["source"]
        == f"postgresql://postgres:***@127.0.0.1:{pg_pair.source.port}/{pg_pair.dbname}"
    )
    assert password not in result.stdout + result.stderr


def test_target_defaults_to_the_stack_output_secret(
    pg_pair: Any, cli: Cli, aws: None, tmp_path: Path
) -> None:
    import boto3

    setup(pg_pair)
    password = secrets.token_urlsafe(12)
    secret = {
        "username": "postgres",
        "password": password,
        "host": "127.0.0.1",
        "port": pg_pair.target.port,
        "dbname": pg_pair.dbname,
    }
    arn = boto3.client("secretsmanager").create_secret(
        Name="aurora-master", SecretString=json.dumps(secret)
    )["ARN"]
    (tmp_path / ".migctl").mkdir()
    (tmp_path / ".migctl" / "outputs-test.json").write_text(json.dumps({"auroraSecretArn": arn}))
    result = cli("--output", "json", "validate", "--source", pg_pair.source_dsn)
    assert result.code == 0, result.stderr
    payload = result.json()
    assert (
        payload["target"]
        == f"postgresql://postgres:***@127.0.0.1:{pg_pair.target.port}/{pg_pair.dbname}"
    )
    assert password not in result.stdout + result.stderr


def test_names_and_keys_with_brackets_are_printed_as_they_are(pg_pair: Any, cli: Cli) -> None:
    """A table name or a key is data, never rich markup: a key like ``[red]k1`` is shown whole
    (the table used to swallow it, hiding which row differs), and ``[/x]`` does not crash it."""
    pg_pair.execute_both(
        'CREATE TABLE "[b]ledger[/b]" (k text PRIMARY KEY, amount int);'
        """INSERT INTO "[b]ledger[/b]" VALUES ('[red]k1', 1), ('[/x]k2', 2), ('k3', 3)"""
    )
    with pg_pair.target_conn() as conn:
        conn.execute("""UPDATE "[b]ledger[/b]" SET amount = 0 WHERE k IN ('[red]k1', '[/x]k2')""")
    result = cli("validate", "--source", pg_pair.source_dsn, "--target", pg_pair.target_dsn)
    assert result.code == 1, result.stderr
    flat = "".join(result.stdout.split())  # the table may fold a long cell
    assert 'public."[b]ledger[/b]"' in flat
    assert "[red]k1" in flat and "[/x]k2" in flat


def test_without_a_terminal_progress_is_one_whole_line_per_table_and_phase(
    pg_pair: Any, cli: Cli
) -> None:
    """In a log (no terminal, COLUMNS unset) the progress is whole lines, never a redrawn bar:
    no escape code, no line cut at 80 columns, each table's phases once and in order."""
    setup(pg_pair)
    result = cli("validate", "--source", pg_pair.source_dsn, "--target", pg_pair.target_dsn)
    assert result.code == 0, result.stderr
    assert "\x1b[" not in result.stderr and "\r" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("public.ledger:")]
    assert len(lines) == len(set(lines)) >= 2, result.stderr  # scanned, then done
    assert lines[-1].startswith("public.ledger: match: 300 rows"), lines
