"""`migctl cutover report`: the evidence of a cutover, from its journal alone.

The fixture journal was recorded from the sandbox (`make demo`'s cutovers): a
broken image that failed at the stage and was undone, then a cutover that
completed and was rolled back after go-live. Each fact of the report is
checked against the journal's own records, read here independently of
``migctl.cutover.evidence``.
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any

import pytest

from migctl.config import DatabaseSettings, PulumiSettings, Settings, ValidateSettings
from migctl.cutover.evidence import build, to_json
from migctl.cutover.provenance import config_digest, run_facts
from migctl.errors import UsageError
from migctl.render.report import report_json, to_markdown
from migctl.render.report_html import to_html
from tests.cli_support import Cli

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "cutover_journal.jsonl"
RECORDS = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
BROKEN, LIVE = dict.fromkeys(r["cutover_id"] for r in RECORDS)
# Passwords generated per run: none is kept in the repository.
LEAKED, ONE, TWO = (secrets.token_urlsafe(12) for _ in range(3))


def of(cutover: str, event: str, step: str | None = None) -> list[dict[str, Any]]:
    return [
        r
        for r in RECORDS
        if r["cutover_id"] == cutover
        and r["event"] == event
        and (step is None or r.get("step") == step)
    ]


def last(cutover: str, event: str, step: str | None = None) -> dict[str, Any]:
    return of(cutover, event, step)[-1]


def test_the_latest_cutover_by_default_and_its_outcome_is_its_last_runs() -> None:
    report = build(RECORDS, journal="j")
    assert report.cutover_id == LIVE
    end = last(LIVE, "run_finished")
    assert (report.outcome, report.exit_code, report.reason) == (
        "rolled_back",
        4,
        "rollback requested",
    )
    assert (end["outcome"], end["exit_code"]) == ("rolled_back", 4)
    started = last(LIVE, "cutover_started")
    assert report.environment == started["environment"] == "sandbox"
    assert report.image == started["image"]
    assert report.started_at == started["ts"]


def test_every_run_with_who_ran_it_and_with_what() -> None:
    report = build(RECORDS, journal="j")
    starts, ends = of(LIVE, "run_started"), of(LIVE, "run_finished")
    assert [r.mode for r in report.runs] == [s["mode"] for s in starts] == ["run", "rollback"]
    for run, start, end in zip(report.runs, starts, ends, strict=True):
        assert (run.started_at, run.finished_at) == (start["ts"], end["ts"])
        assert (run.user, run.host, run.pid) == (start["user"], start["host"], start["pid"])
        assert run.migctl_version == start["migctl_version"]
        assert run.config_sha256 == start["config_sha256"]
        assert (run.outcome, run.exit_code) == (end["outcome"], end["exit_code"])
    assert report.systems["config_sha256"] == starts[-1]["config_sha256"]
    assert (
        report.systems["dms_task"]
        == last(LIVE, "step_finished", "preflight")["details"]["dms_task"]
    )
    versions = last(LIVE, "step_finished", "validate")["details"]["server_versions"]
    number = versions["source"]
    assert report.systems["source_server"] == f"{number // 10000}.{number % 10000}"
    stage = last(LIVE, "step_started", "stage")["before"]
    assert (report.systems["ecs_cluster"], report.systems["ecs_service"]) == (
        stage["cluster"],
        stage["service"],
    )


def test_the_freeze_window_is_the_journals_and_so_is_its_proof() -> None:
    report = build(RECORDS, journal="j")
    frozen = last(LIVE, "step_finished", "freeze_writes")["details"]
    live = [
        r["details"]["progress"]["live_at"]
        for r in of(LIVE, "note", "rollout")
        if "live_at" in r.get("details", {}).get("progress", {})
    ]
    assert report.freeze.started_at == frozen["frozen_at"]
    assert report.freeze.ended_at == live[0]
    assert report.freeze.seconds == last(LIVE, "run_finished")["write_freeze_seconds"]
    assert not report.freeze.still_frozen
    proof = last(LIVE, "step_finished", "prove_freeze")["details"]["proof"]
    assert report.freeze.proofs[0]["from_lsn"] == proof["from_lsn"]
    assert report.freeze.proofs[0]["to_lsn"] == proof["to_lsn"]
    assert report.freeze.proofs[0]["breaches"] == proof["breaches"] == []
    assert (
        report.freeze.fenced["creates"]
        == last(LIVE, "step_started", "freeze_writes")["before"]["creates"]
    )
    assert report.freeze.restored == last(LIVE, "undo_finished", "freeze_writes")["details"]


def test_validation_per_table_and_the_sequences_before_and_after() -> None:
    report = build(RECORDS, journal="j")
    baseline = last(LIVE, "step_finished", "baseline")["details"]
    assert report.validation.baseline is not None
    assert report.validation.baseline["compared"] == baseline["compared"]
    tables = {t["table"] for t in baseline["compared"]}
    assert tables == {
        "public.accounts",
        "public.audit_log",
        "public.customers",
        "public.ledger_entries",
        "public.payments",
    }
    assert all(re.fullmatch(r"\d+:[0-9a-f]{16}", t["source_digest"]) for t in baseline["compared"])
    final = last(LIVE, "step_finished", "validate")["details"]
    assert report.validation.final == final and report.validation.final_status == "done"
    assert final["still_differing"] == 0 and final["read_up_to"]
    counted = [t["table"] for t in final["compared"] if t["source_rows"] is None]
    rows = [line for line in to_markdown(report).splitlines() if "| not counted |" in line]
    assert counted and len(rows) == len(counted)  # an incremental round counts no rows
    values = last(LIVE, "step_finished", "sync_sequences")["details"]["values"]
    assert list(report.validation.sequences) == values
    assert all(v["after"] > v["leader"] for v in values)  # the target's now ahead


def test_the_rollout_its_task_definitions_deployments_events_and_alarms() -> None:
    report = build(RECORDS, journal="j")
    o = report.rollout
    assert (
        o.task_definition_before
        == last(LIVE, "step_started", "rollout")["before"]["previous_task_definition"]
    )
    assert (
        o.task_definition_after
        == last(LIVE, "step_finished", "rollout")["details"]["task_definition"]
    )
    assert o.images_before == last(LIVE, "step_started", "rollout")["before"]["previous_images"]
    assert o.images_before and o.image not in o.images_before.values()
    notes = [r for r in of(LIVE, "note") if r.get("details", {}).get("rollout_event")]
    assert [e.message for e in o.events] == [r["message"] for r in notes]
    assert o.deployments == tuple(
        dict.fromkeys(
            r["details"]["facts"]["id"]
            for r in notes
            if r["details"]["rollout_event"] == "deployment"
        )
    )
    alarms = [r["details"]["facts"] for r in notes if r["details"]["rollout_event"] == "alarm"]
    assert alarms and [(a["name"], a["state"]) for a in o.alarms] == [
        (a["name"], a["state"]) for a in alarms
    ]
    assert o.live_at == report.freeze.ended_at


def test_the_timeline_has_each_attempt_and_each_undo_in_journal_order() -> None:
    report = build(RECORDS, journal="j")
    starts = [
        (r["event"].split("_")[0], r["step"], r["ts"])
        for r in RECORDS
        if r["cutover_id"] == LIVE and r["event"] in ("step_started", "undo_started")
    ]
    kinds = {"step": "step", "undo": "undo"}
    assert [(kinds[s.kind], s.step, s.start) for s in report.timeline] == starts
    assert all(s.end is not None for s in report.timeline)
    undone = [r["step"] for r in of(LIVE, "undo_finished")]
    assert [s.step for s in report.timeline if s.kind == "undo"] == undone


def test_a_cutover_that_failed_at_the_stage_was_never_frozen_and_says_so() -> None:
    report = build(RECORDS, journal="j", cutover_id=BROKEN)
    assert (report.outcome, report.exit_code) == ("rolled_back", 4)
    assert "did not start on the standby" in (report.reason or "")
    assert report.freeze.started_at is None and report.freeze.seconds is None
    stage = next(s for s in report.steps if s.name == "stage")
    assert (stage.status, stage.undo_status) == ("undone", "undone")
    assert report.validation.final is None
    versions = last(BROKEN, "step_finished", "preflight")["details"]["server_versions"]
    assert (
        report.systems["target_server"]
        == f"{versions['target'] // 10000}.{versions['target'] % 10000}"
    )
    text = to_markdown(report)
    assert "the source was never frozen" in text
    assert "Validation under the freeze: pending" in text
    deployments = [
        r["details"]["facts"]["id"]
        for r in of(BROKEN, "note", "stage")
        if r.get("details", {}).get("rollout_event") == "deployment"
    ]
    assert report.rollout.deployments == tuple(dict.fromkeys(deployments))


def test_a_run_that_died_is_unfinished_its_last_step_open_and_the_freeze_still_counting() -> None:
    cut = next(
        i
        for i, r in enumerate(RECORDS)
        if r["cutover_id"] == LIVE and r["event"] == "step_started" and r["step"] == "validate"
    )
    report = build(RECORDS[: cut + 1], journal="j")
    assert (report.outcome, report.exit_code) == ("unfinished", None)
    assert report.timeline[-1].step == "validate" and report.timeline[-1].end is None
    assert report.freeze.still_frozen and report.freeze.ended_at is None
    html = to_html(report)
    assert "no end journaled" in html and "unfinished" in html


def test_unknown_or_no_cutover_is_one_line_naming_the_journal() -> None:
    with pytest.raises(UsageError, match=r"no cutover 'nope' in the journal j"):
        build(RECORDS, journal="j", cutover_id="nope")
    with pytest.raises(UsageError, match="holds no cutover yet"):
        build([], journal="j")


def hostile() -> list[dict[str, Any]]:
    """The fixture with an error that holds markup, pipes and a DSN with its password."""
    records = [dict(r) for r in RECORDS if r["cutover_id"] == BROKEN]
    for r in records:
        if r["event"] == "step_finished" and r["step"] == "stage":
            r["error"] = (
                "<script>alert(1)</script> | *bold* [x](http://example.invalid) "
                f"postgresql://app:{LEAKED}@db:5432/payments"
            )
    return records


def test_no_markup_from_the_journal_survives_in_any_format_and_no_password() -> None:
    report = build(hostile(), journal="j")
    html = to_html(report)
    assert "<script>" not in html and "&lt;script&gt;" in html
    markdown = to_markdown(report)
    row = next(line for line in markdown.splitlines() if line.startswith("| stage |"))
    assert row.count(" | ") == 7  # the error's pipe did not add a column
    assert "\\<script\\>" in row and "\\[x\\]" in row
    for text, masked in (
        (html, "app:***@db"),
        (markdown, "app:\\*\\*\\*@db"),
        (report_json(report), "app:***@db"),
    ):
        assert LEAKED not in text
        assert masked in text


def test_the_html_fetches_nothing_and_draws_every_step_and_the_freeze() -> None:
    report = build(RECORDS, journal="j")
    html = to_html(report)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "@import" not in html and "url(" not in html and "<script" not in html
    assert "default-src 'none'" in html  # the browser refuses anything else
    bars = re.findall(r'<rect class="bar (step|undo) [a-z_]+" data-step="([a-z_]+)"', html)
    assert bars == [(s.kind, s.step) for s in report.timeline]
    assert len(re.findall(r'<rect class="freeze" data-seconds="([0-9.]+)"', html)) == 1
    assert f"write freeze {report.freeze.seconds:.2f} s" in html


def test_json_is_the_reports_data_and_says_its_version() -> None:
    report = build(RECORDS, journal="j")
    data = json.loads(report_json(report))
    assert data == json.loads(json.dumps(to_json(report), default=str))
    assert data["report_version"] == 1
    assert {
        "cutover_id",
        "outcome",
        "exit_code",
        "runs",
        "systems",
        "steps",
        "timeline",
        "freeze",
        "validation",
        "rollout",
        "latency",
        "warnings",
        "manual_steps",
    } <= set(data)


# --- the configuration's digest -------------------------------------------------------------


def settings(**fields: Any) -> Settings:
    return Settings(**fields)


def test_the_config_digest_ignores_secrets_and_sees_every_other_change() -> None:
    base = settings(source=DatabaseSettings(dsn=f"postgresql://app:{ONE}@db/payments"))
    other_password = settings(source=DatabaseSettings(dsn=f"postgresql://app:{TWO}@db/payments"))
    other_host = settings(source=DatabaseSettings(dsn=f"postgresql://app:{ONE}@db2/payments"))
    assert config_digest(base) == config_digest(other_password)
    assert config_digest(base) != config_digest(other_host)
    assert config_digest(base) != config_digest(settings(validate=ValidateSettings(jobs=3)))
    keyed = {"dbPassword": ONE, "region": "eu-west-1"}
    secret = settings(pulumi=PulumiSettings(config=keyed, secret_keys=("dbPassword",)))
    rotated = settings(
        pulumi=PulumiSettings(config={**keyed, "dbPassword": TWO}, secret_keys=("dbPassword",))
    )
    assert config_digest(secret) == config_digest(rotated)
    moved = settings(
        pulumi=PulumiSettings(config={**keyed, "region": "us-east-1"}, secret_keys=("dbPassword",))
    )
    assert config_digest(secret) != config_digest(moved)
    assert config_digest(base) == config_digest(settings(**{**base.__dict__, "verbose": 2}))


def test_run_facts_say_who_where_and_which_migctl() -> None:
    facts = run_facts(settings())
    assert set(facts) == {"user", "host", "pid", "migctl_version", "config_sha256"}
    assert facts["user"] and facts["host"] and len(facts["config_sha256"]) == 64


# --- the command ----------------------------------------------------------------------------


@pytest.fixture
def journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cutover.jsonl"
    path.write_text(FIXTURE.read_text())
    config = tmp_path / "migctl.toml"
    config.write_text(f'[project]\nenvironment = "unit"\n\n[cutover]\njournal = "{path}"\n')
    monkeypatch.setenv("MIGCTL_CONFIG", str(config))
    monkeypatch.chdir(tmp_path)
    return path


def test_report_writes_the_latest_cutover_beside_and_names_the_file(
    cli: Cli, journal: Path
) -> None:
    result = cli("cutover", "report")
    assert result.code == 0, result.stderr
    written = journal.parent / f"cutover-{LIVE}.html"
    assert f"Report of cutover {LIVE} (rolled_back): {written}" in result.stdout
    assert written.read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("fmt", ["html", "md", "json"])
def test_each_format_to_stdout_and_the_json_result_line(cli: Cli, journal: Path, fmt: str) -> None:
    result = cli("cutover", "report", "--cutover", BROKEN, "--format", fmt, "--out", "-")
    assert result.code == 0, result.stderr
    assert BROKEN in result.stdout and LIVE not in result.stdout
    out = journal.parent / "r.out"
    result = cli("--output", "json", "cutover", "report", "--format", fmt, "--out", str(out))
    assert result.code == 0, result.stderr
    assert result.json() == {
        "path": str(out),
        "format": fmt,
        "cutover_id": LIVE,
        "outcome": "rolled_back",
        "exit_code": 4,
    }


def test_another_journal_with_journal(cli: Cli, journal: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "copy.jsonl"
    elsewhere.write_text("\n".join(json.dumps(r) for r in RECORDS if r["cutover_id"] == BROKEN))
    result = cli("--output", "json", "cutover", "report", "--journal", str(elsewhere))
    assert result.code == 0, result.stderr
    assert result.json()["cutover_id"] == BROKEN


@pytest.mark.parametrize(
    ("args", "code", "line"),
    [
        (("--cutover", "nope"), 2, "no cutover 'nope' in the journal"),
        (("--format", "pdf"), 2, "--format 'pdf': one of html, md, json"),
        (("--out", "/nonexistent-dir/r.html"), 3, "cannot write /nonexistent-dir/r.html"),
    ],
)
def test_bad_input_is_one_line_and_its_exit_code(
    cli: Cli, journal: Path, args: tuple[str, ...], code: int, line: str
) -> None:
    result = cli("cutover", "report", *args)
    assert result.code == code
    assert line in result.stderr and "Traceback" not in result.stderr
    assert not list(journal.parent.glob("*.html"))


def test_an_unreadable_journal_is_exit_3_never_an_empty_report(cli: Cli, journal: Path) -> None:
    journal.write_bytes(journal.read_bytes() + b"\0garbage\n")
    result = cli("cutover", "report")
    assert result.code == 3 and "unreadable" in result.stderr


def test_a_rollback_that_died_after_a_completed_run_is_never_reported_completed() -> None:
    cut = next(
        i for i, r in enumerate(RECORDS) if r["cutover_id"] == LIVE and r["event"] == "undo_started"
    )
    report = build(RECORDS[: cut + 1], journal="j")
    assert (report.outcome, report.exit_code, report.phase) == ("unfinished", None, "rolling_back")
    assert report.runs[-1].mode == "rollback" and report.runs[-1].finished_at is None
    assert report.runs[0].outcome == "completed"  # the earlier run's own outcome stays its own
    assert "unfinished (exit not recorded)" in to_markdown(report)
