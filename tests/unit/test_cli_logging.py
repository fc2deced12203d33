"""-q, -v, -vv and --log-file: what reaches stdout, stderr and the log file, and never a password."""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import socket
from pathlib import Path
from typing import Any

import boto3
import pytest

from migctl import __version__
from migctl.cli.logs import JsonLines
from migctl.poll import Clock, Done, Pending, poll
from tests.cli_support import Cli, CliResult

WAIT = (
    "alarms",
    "--prefix",
    "payments-test-",
    "--wait-ok",
    "--timeout",
    "0.2",
    "--interval",
    "0.05",
)


def put_alarms() -> None:
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    for name in ("payments-test-a", "payments-test-b"):
        cw.put_metric_alarm(
            AlarmName=name,
            Namespace="AWS/ApplicationELB",
            MetricName="HealthyHostCount",
            Statistic="Minimum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=2,
            ComparisonOperator="LessThanThreshold",
        )
    cw.set_alarm_state(AlarmName="payments-test-a", StateValue="ALARM", StateReason="down")
    cw.set_alarm_state(AlarmName="payments-test-b", StateValue="OK", StateReason="fine")


def log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.usefixtures("aws")
def test_quiet_prints_only_the_result(cli: Cli) -> None:
    put_alarms()
    loud = cli(*WAIT)
    assert loud.code == 1 and "waiting for OK: payments-test-a=ALARM" in loud.stderr
    quiet = cli("-q", *WAIT)
    assert quiet.code == 1
    assert "waiting for OK:" not in quiet.stderr and "payments-test-a" in quiet.stdout
    # the verdict line stays (it is the result for people), and nothing else
    assert quiet.stderr.splitlines() == ["timed out waiting for OK; 1 alarm(s) still not OK"]
    loud_json = cli("-o", "json", *WAIT).json_lines()
    assert [line["event"] for line in loud_json][-2:] == ["poll", "result"]
    quiet_json = cli("-o", "json", *WAIT, "--quiet")  # a global option after the command
    (result,) = quiet_json.json_lines()
    assert result["event"] == "result" and result["timed_out"] is True
    assert quiet_json.stderr == ""


@pytest.mark.usefixtures("aws")
def test_quiet_still_says_an_error_in_one_line_with_its_exit_code(cli: Cli) -> None:
    result = cli("-q", "alarms", "--prefix", "payments-nothing-")
    assert result.code == 2 and result.stdout == ""
    assert (
        result.stderr == "migctl: error: no CloudWatch alarm matches --prefix 'payments-nothing-'\n"
    )


@pytest.mark.usefixtures("aws")
def test_verbose_shows_each_poll_and_alarm_gate(cli: Cli) -> None:
    put_alarms()
    plain = cli(*WAIT)
    assert "INFO" not in plain.stderr
    result = cli("-v", *WAIT)
    assert result.code == 1
    polls = [line for line in result.stderr.splitlines() if line.startswith("INFO migctl.poll:")]
    assert len(polls) >= 2, result.stderr
    assert polls[0].startswith(
        "INFO migctl.poll: waiting for alarms --prefix 'payments-test-' to be OK: "
        "not OK: payments-test-a=ALARM; next poll in 0.05s"
    )
    assert "gave up after" in polls[-1]
    assert (
        "INFO migctl.alarms: alarm gate 1 of 2 not OK: payments-test-a=ALARM, payments-test-b=OK"
        in result.stderr
    )
    assert "DEBUG" not in result.stderr  # the libraries' debug is -vv


def test_poll_logs_what_it_waits_for_why_and_the_next_delay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answers = iter([Pending(1, reason="1 of 3 ready"), Pending(2, reason="2 of 3 ready"), Done(3)])
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with caplog.at_level(logging.INFO, logger="migctl"):
        result = poll(
            lambda _r: next(answers),
            timeout=60,
            interval=5,
            clock=Clock(lambda: now[0], sleep),
            what="the replicas",
        )
    assert result.done and result.value == 3
    assert caplog.messages == [
        "waiting for the replicas: 1 of 3 ready; next poll in 5s",
        "waiting for the replicas: 2 of 3 ready; next poll in 5s",
        "the replicas: done after 3 poll(s), 10.0s",
    ]


def test_validation_logs_each_table_it_compared(caplog: pytest.LogCaptureFixture) -> None:
    from migctl.validate.runner import ValidateOptions, run
    from tests.unit.test_validate_runner import FakeExecutor, catalog

    fake = FakeExecutor(catalog(160000, ("public", "a")), catalog(160000, ("public", "a")))
    with caplog.at_level(logging.INFO, logger="migctl"):
        run(fake, ValidateOptions(schemas=("public",)))
    assert [m for m in caplog.messages if m.startswith("compared")] == [
        "compared public.a: match, None source / None target rows, 0 queries, 0.00s"
    ]


@pytest.mark.usefixtures("aws")
def test_log_file_writes_json_lines_whatever_quiet_says(cli: Cli, tmp_path: Path) -> None:
    put_alarms()
    path = tmp_path / "migctl.log"
    result = cli("-q", "--log-file", str(path), *WAIT)
    assert result.code == 1 and "INFO" not in result.stderr
    lines = log_lines(path)
    for line in lines:
        assert set(line) == {"ts", "level", "logger", "message"}, line
        ts = dt.datetime.fromisoformat(line["ts"])
        assert ts.utcoffset() == dt.timedelta(0)
        assert line["level"] != "DEBUG" or line["logger"].startswith("migctl"), line
    messages = [(line["level"], line["logger"], line["message"]) for line in lines]
    assert messages[0] == ("DEBUG", "migctl.cli", f"migctl {__version__}: alarms")
    assert any(m[:2] == ("INFO", "migctl.poll") and "waiting for alarms" in m[2] for m in messages)
    assert any(m[:2] == ("INFO", "migctl.alarms") for m in messages)
    assert messages[-1] == ("DEBUG", "migctl.cli", "exit 1")
    # a second run appends
    cli("--log-file", str(path), "alarms", "--prefix", "payments-test-")
    assert len(log_lines(path)) > len(lines)


def test_log_file_keeps_the_traceback_of_an_internal_error(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import migctl.alarms

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("kaput")

    monkeypatch.setattr(migctl.alarms, "check_alarms", boom)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    path = tmp_path / "err.log"
    result = cli("--log-file", str(path), "alarms", "--prefix", "x")
    assert result.code == 3 and len(result.stderr.splitlines()) == 1
    (failure,) = [line for line in log_lines(path) if line["level"] == "ERROR"]
    assert failure["message"] == "internal error: RuntimeError"
    assert "Traceback" in failure["exception"] and "kaput" in failure["exception"]


def _dsns(password: str, port: int) -> dict[str, str]:
    return {
        "url": f"postgresql://app:{password}@127.0.0.1:{port}/pay?connect_timeout=3",
        "keywords": f"host=127.0.0.1 port={port} dbname=pay user=app password={password}",
    }


@pytest.mark.parametrize("form", ["url", "keywords"])
@pytest.mark.parametrize("given", ["flag", "config"])
@pytest.mark.parametrize("verbosity", [(), ("-v",), ("-vv",)])
def test_no_password_reaches_the_log_file_or_the_terminal(
    cli: Cli, tmp_path: Path, form: str, given: str, verbosity: tuple[str, ...]
) -> None:
    password = secrets.token_urlsafe(16)
    port = dead_port()
    dsn = _dsns(password, port)[form]
    target = f"postgresql://app@127.0.0.1:{port}/other"
    path = tmp_path / "run.log"
    if given == "flag":
        args = ["validate", "--source", dsn, "--target", target]
    else:
        (tmp_path / "migctl.toml").write_text(
            f"[source]\ndsn = {json.dumps(dsn)}\n[target]\ndsn = {json.dumps(target)}\n"
        )
        args = ["validate"]
    result: CliResult = cli(*verbosity, "--log-file", str(path), *args)
    assert result.code == 3, result.stderr
    text = path.read_text()
    assert f"connecting to 127.0.0.1 port {port} database pay as app" in text
    assert "cannot connect to postgresql://app:***@127.0.0.1" in text
    for where in (text, result.stdout, result.stderr):
        assert password not in where and password[:8] not in where


@pytest.mark.parametrize("where", ["missing/folder/run.log", "."])
def test_an_unwritable_log_file_is_exit_2_in_one_line(cli: Cli, tmp_path: Path, where: str) -> None:
    result = cli("--log-file", str(tmp_path / where), "alarms", "--prefix", "x")
    assert result.code == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"migctl: error: --log-file {tmp_path / where}: cannot write it: ")


def test_quiet_and_verbose_together_are_exit_2(cli: Cli) -> None:
    result = cli("-q", "-v", "alarms", "--prefix", "x")
    assert result.code == 2
    assert result.stderr == "migctl: error: -q/--quiet and -v/--verbose cannot be used together\n"


def test_the_log_file_is_closed_after_a_run(cli: Cli, tmp_path: Path) -> None:
    assert cli("--log-file", str(tmp_path / "y.log"), "alarms").code == 2
    assert not [h for h in logging.getLogger().handlers if isinstance(h.formatter, JsonLines)]
    assert (tmp_path / "y.log").read_text().count("\n") >= 2
