"""The validation Lambda's handler, in process, against the harness clusters (DSNs instead of secrets)."""

from __future__ import annotations

from typing import Any

from migctl.validate.checksum import Buckets, ChecksumPlan
from migctl.validate.hashing import ColumnHash
from migctl.validate.lambda_handler import handle
from migctl.validate.payloads import PAYLOAD_VERSION as V


def test_checksum_action_matches_on_equal_data_and_differs_on_a_change(pg_pair: Any) -> None:
    pg_pair.execute_both(
        "CREATE TABLE t (id int PRIMARY KEY, note text, at timestamptz);"
        "INSERT INTO t SELECT g, 'n' || g, '2024-01-01 00:00+00'::timestamptz + g * interval '1 s'"
        " FROM generate_series(1, 100) g"
    )
    plan = ChecksumPlan(
        "public",
        "t",
        (ColumnHash("id", "int"), ColumnHash("note", "text"), ColumnHash("at", "timestamptz")),
        ("id",),
    )
    buckets = Buckets("range", bounds=(26, 51, 76))

    def checksum(side: str, dsn: str) -> dict[str, Any]:
        event = {
            "version": V,
            "action": "checksum",
            "side": side,
            "dsn": dsn,
            "plan": plan.to_dict(),
            "buckets": buckets.to_dict(),
        }
        return handle(event, None)

    source = checksum("source", pg_pair.source_dsn)
    target = checksum("target", pg_pair.target_dsn)
    assert source["ok"] is True, source
    assert source["rows"] == 100 and len(source["buckets"]) == 4
    assert source["buckets"] == target["buckets"]
    with pg_pair.target_conn() as conn:
        conn.execute("UPDATE t SET note = NULL WHERE id = 60")
    changed = {b["bucket"]: b for b in checksum("target", pg_pair.target_dsn)["buckets"]}
    original = {b["bucket"]: b for b in source["buckets"]}
    assert [b for b in original if original[b] != changed[b]] == [2]  # 51 <= 60 < 76


def test_unknown_versions_actions_and_bad_plans_get_an_error_payload() -> None:
    assert handle({"version": 1, "action": "checksum"}, None) == {
        "version": V,
        "ok": False,
        "error": f"unsupported payload version 1; this handler speaks version {V}",
    }
    unknown = handle({"version": V, "action": "drop"}, None)
    assert unknown["ok"] is False and "unknown action 'drop'" in unknown["error"]
    bad = handle(
        {
            "version": V,
            "action": "checksum",
            "side": "source",
            "dsn": "host=127.0.0.1",
            "plan": {
                "schema": "s",
                "table": "t",
                "columns": [{"name": "a", "family": "evil"}],
                "key": [],
            },
            "buckets": {"kind": "hash"},
        },
        None,
    )
    assert bad["ok"] is False and "bad checksum plan" in bad["error"]


def test_checksum_reads_credentials_from_secrets_manager(
    pg_pair: Any, aws: None, monkeypatch: Any
) -> None:
    import json
    import secrets

    import boto3

    pg_pair.execute_both(
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10)"
    )
    secret = {
        "username": "postgres",
        "password": secrets.token_urlsafe(12),
        "host": "127.0.0.1",
        "port": pg_pair.target.port,
        "dbname": pg_pair.dbname,
    }
    arn = boto3.client("secretsmanager").create_secret(Name="tgt", SecretString=json.dumps(secret))[
        "ARN"
    ]
    monkeypatch.setenv("TARGET_SECRET_ARN", arn)
    plan = ChecksumPlan("public", "t", (ColumnHash("id", "int"),), ("id",))
    event = {
        "version": V,
        "action": "checksum",
        "side": "target",
        "plan": plan.to_dict(),
        "buckets": Buckets("range").to_dict(),
    }
    answer = handle(event, None)
    assert answer["ok"] is True, answer
    assert answer["rows"] == 10 and answer["server_version"] >= 150000
    missing = handle({**event, "side": "source"}, None)
    assert missing["ok"] is False and "SOURCE_SECRET_ARN" in missing["error"]
