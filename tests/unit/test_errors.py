"""The exit-code table and how library errors map onto it."""

from __future__ import annotations

import re
from pathlib import Path

import botocore.exceptions
import psycopg
import pytest

from migctl import errors
from migctl.errors import ExitCode


def test_exit_code_table_matches_the_readme() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}
    assert documented == {c.value for c in ExitCode}
    assert {c.name: c.value for c in ExitCode} == {
        "OK": 0,
        "CHECK_FAILED": 1,
        "USAGE": 2,
        "OPERATIONAL": 3,
        "ROLLED_BACK": 4,
        "ROLLBACK_FAILED": 5,
        "INTERRUPTED": 130,
    }


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (errors.CheckFailed, 1),
        (errors.UsageError, 2),
        (errors.ConfigError, 2),
        (errors.OperationalError, 3),
        (errors.AwsError, 3),
        (errors.DatabaseError, 3),
        (errors.ToolMissingError, 3),
    ],
)
def test_each_error_class_carries_its_exit_code(cls: type[errors.MigctlError], code: int) -> None:
    assert cls("x").exit_code == code


def test_client_error_becomes_aws_error_with_code_and_message() -> None:
    exc = botocore.exceptions.ClientError(
        {"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, "DescribeAlarms"
    )
    err = errors.translate(exc)
    assert isinstance(err, errors.AwsError)
    assert err.exit_code == 3
    assert err.one_line() == "AWS DescribeAlarms failed: AccessDenied: not allowed"


def test_missing_region_is_a_config_error() -> None:
    err = errors.translate(botocore.exceptions.NoRegionError())
    assert isinstance(err, errors.ConfigError)


def test_missing_credentials_is_operational() -> None:
    err = errors.translate(botocore.exceptions.NoCredentialsError())
    assert err is not None and err.exit_code == 3 and err.hint


def test_psycopg_error_is_a_database_error_with_password_masked() -> None:
    err = errors.translate(psycopg.OperationalError("failed for password=hunter2x user=app"))
    assert isinstance(err, errors.DatabaseError)
    assert "hunter2x" not in err.one_line()
    assert "password=***" in err.one_line()


def test_unknown_exceptions_are_not_translated() -> None:
    assert errors.translate(ValueError("boom")) is None


def test_one_line_folds_newlines_and_appends_hint() -> None:
    err = errors.UsageError("first\nsecond", hint="do this")
    assert err.one_line() == "first second (do this)"


def test_an_aws_error_whose_message_is_a_web_page_does_not_show_the_page() -> None:
    exc = botocore.exceptions.ClientError(
        {"Error": {"Code": "404", "Message": "<!DOCTYPE html><html><body>Not Found</body></html>"}},
        "DescribeAlarms",
    )
    err = errors.translate(exc)
    assert isinstance(err, errors.AwsError) and err.exit_code == 3
    assert "<" not in err.one_line() and "--region" in err.one_line()
