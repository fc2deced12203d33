"""Helpers for the cutover tests that drive a sandbox with `python -m migctl` subprocesses."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from migctl.sandbox.environment import APP_ROLE, SandboxState, aws_session

SEQUENCES = {  # sequence -> (table, column) in the sandbox's payments schema
    "accounts_id_seq": ("accounts", "id"),
    "customers_id_seq": ("customers", "id"),
    "ledger_entries_id_seq": ("ledger_entries", "id"),
    "payments_id_seq": ("payments", "id"),
}
# Fast polls and a short bake: the sandbox answers in milliseconds.
FAST = {
    "MIGCTL_CUTOVER_INTERVAL_SECONDS": "0.3",
    "MIGCTL_CUTOVER_WAIT_TIMEOUT_SECONDS": "90",
    "MIGCTL_CUTOVER_MARKER_TIMEOUT_SECONDS": "60",
    "MIGCTL_ECS_BAKE_SECONDS": "1",
    "MIGCTL_ECS_INTERVAL_SECONDS": "0.5",
}


def fresh_dir(name: str) -> Path:
    # Not under pytest's basetemp: every pytest session resets it to mode 0700, which
    # would lock out the postgres user that runs the clusters when tests run as root.
    return Path(tempfile.mkdtemp(prefix="migctl-cut-")) / name


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MIGCTL_"))}


def run(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migctl", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Sandbox:
    dir: Path
    env: dict[str, str]
    state: SandboxState
    queue_url: str = ""
    journals: list[Path] = field(default_factory=list)
    up_output: str = ""  # what `migctl -vv sandbox up` printed
    ecs_keys_before: int = 0  # lines of logs/ecs.keys when the current go-live started

    def passwords(self) -> list[str]:
        """The passwords in the sandbox's Secrets Manager secrets (generated at `sandbox up`)."""
        sm = self.aws("secretsmanager")
        found = []
        for listed in sm.list_secrets()["SecretList"]:
            value = json.loads(sm.get_secret_value(SecretId=listed["ARN"])["SecretString"])
            found.append(str(value["password"]))
        return found

    def journal(self, name: str) -> Path:
        path = self.dir / "journals" / f"{name}.jsonl"
        self.journals.append(path)
        return path

    def env_for(self, journal: Path, **extra: str) -> dict[str, str]:
        return {**self.env, **FAST, "MIGCTL_CUTOVER_JOURNAL": str(journal), **extra}

    def cutover(self, journal: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return run(self.env_for(journal, **extra), "--output", "json", "cutover", *args)

    def popen(self, journal: Path, *args: str, **extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "migctl", "--output", "json", "cutover", *args],
            env=self.env_for(journal, **extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def aws(self, service: str) -> Any:
        return aws_session(self.state).client(service)

    def source(self, user: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(self.state.source_dsn(user), autocommit=True)

    def target(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.state.target_dsn(), autocommit=True)


def up(name: str, rows: int) -> Sandbox:
    """A sandbox, started at -vv (its output is kept: no password may be in it)."""
    directory = fresh_dir(name)
    started = run(clean_env(), "-vv", "sandbox", "up", "--dir", str(directory), "--rows", str(rows))
    assert started.returncode == 0, started.stderr[-3000:]
    state = SandboxState.load(directory)
    assert state is not None
    env = clean_env()
    for line in (directory / "sandbox.env").read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value
    return Sandbox(directory, env, state, up_output=started.stdout + started.stderr)


def down(sandbox: Sandbox) -> None:
    result = run(clean_env(), "sandbox", "down", "--dir", str(sandbox.dir))
    assert result.returncode == 0, result.stderr
    sandbox.dir.parent.rmdir()  # fresh_dir's temporary parent: empty once the sandbox is down


def result_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert lines, f"no JSON on stdout; stderr: {proc.stderr}"
    last = lines[-1]
    assert last["event"] == "result", last
    return dict(last)


def statuses(result: dict[str, Any]) -> dict[str, str]:
    return {step["name"]: step["status"] for step in result["steps"]}


def records(journal: Path) -> list[dict[str, Any]]:
    if not journal.exists():
        return []
    return [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]


def wait_for_record(journal: Path, event: str, step: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r["event"] == event and r.get("step") == step for r in records(journal)):
            return
        time.sleep(0.2)
    raise AssertionError(f"no {event} {step} in {journal} after {timeout}s")


def app_can_write(sandbox: Sandbox) -> bool:
    """A new session of the application's role inserts a row, or is refused as read-only."""
    try:
        with sandbox.source(APP_ROLE) as conn:
            conn.execute("INSERT INTO audit_log (actor, action) VALUES ('test', 'write-probe')")
    except psycopg.errors.ReadOnlySqlTransaction:
        return False
    return True


def app_refused_on_target(sandbox: Sandbox) -> str | None:
    """The application role's write on the target: why it was refused, or None if it passed
    (rolled back either way: the probe leaves nothing behind)."""
    with psycopg.connect(sandbox.state.target_dsn(APP_ROLE)) as conn:
        try:
            conn.execute("INSERT INTO audit_log (actor, action) VALUES ('test', 'write-probe')")
        except psycopg.Error as exc:
            return str(exc)
        finally:
            conn.rollback()
    return None


def dms_status(sandbox: Sandbox) -> str:
    result = run(sandbox.env, "--output", "json", "dms", "status")
    return str(json.loads(result.stdout)["task"]["status"])


def service_image(sandbox: Sandbox) -> str:
    ecs = sandbox.aws("ecs")
    config = (sandbox.dir / "migctl.toml").read_text()
    cluster = config.split('cluster = "', 1)[1].split('"', 1)[0]
    service = config.split('service = "', 1)[1].split('"', 1)[0]
    found = ecs.describe_services(cluster=cluster, services=[service])["services"][0]
    taskdef = ecs.describe_task_definition(taskDefinition=found["taskDefinition"])
    return str(taskdef["taskDefinition"]["containerDefinitions"][0]["image"])


def sequences_at_margin(sandbox: Sandbox, margin: int = 1000) -> dict[str, tuple[int, int]]:
    """Each target sequence's last_value and max(source used, max(column)) + margin."""
    found = {}
    with sandbox.source() as src, sandbox.target() as tgt:
        for sequence, (table, column) in SEQUENCES.items():
            last, called = src.execute(f"SELECT last_value, is_called FROM {sequence}").fetchone()  # type: ignore[misc]
            used = last if called else last - 1
            highest = max(
                conn.execute(f"SELECT coalesce(max({column}), 0) FROM {table}").fetchone()[0]  # type: ignore[index]
                for conn in (src, tgt)
            )
            target_last = tgt.execute(f"SELECT last_value FROM {sequence}").fetchone()[0]  # type: ignore[index]
            found[sequence] = (int(target_last), max(used, highest) + margin)
    return found


def subscribe_notices(sandbox: Sandbox) -> None:
    sqs = sandbox.aws("sqs")
    url = sqs.create_queue(QueueName="cutover-notices")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    topic = sandbox.state.outputs["snsTopicArn"]
    sandbox.aws("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    sandbox.queue_url = url


def notices(sandbox: Sandbox) -> list[str]:
    """The subjects of the SNS notices received since the last call."""
    sqs = sandbox.aws("sqs")
    subjects = []
    while True:
        got = sqs.receive_message(QueueUrl=sandbox.queue_url, MaxNumberOfMessages=10)
        messages = got.get("Messages", [])
        if not messages:
            return subjects
        for message in messages:
            subjects.append(json.loads(message["Body"])["Subject"])
            sqs.delete_message(QueueUrl=sandbox.queue_url, ReceiptHandle=message["ReceiptHandle"])


class SteadyWriter:
    """The application as an adversary: ``rate`` writes a second as its role, each in a
    ``BEGIN READ WRITE`` transaction, retrying after any refusal; every commit is counted.

    Each write inserts an audit row with a unique tag, so afterwards every committed tag can
    be looked for on the target."""

    def __init__(self, sandbox: Sandbox, rate: float) -> None:
        import threading

        self.sandbox = sandbox
        self.rate = rate
        self.committed: list[str] = []
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SteadyWriter:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        number = 0
        while not self._stop.wait(1 / self.rate):
            number += 1
            tag = f"steady-{self.rate:g}-{number}"
            try:
                if conn is None or conn.closed:
                    conn = self.sandbox.source(APP_ROLE)
                conn.execute("BEGIN READ WRITE")
                conn.execute("INSERT INTO audit_log (actor, action) VALUES ('steady', %s)", (tag,))
                conn.execute("COMMIT")
            except psycopg.Error:
                self.refused += 1
                if conn is not None and not conn.closed:
                    conn.close()  # ended by the freeze, or refused: a new session next time
                conn = None
                continue
            self.committed.append(tag)
        if conn is not None:
            conn.close()

    def found_on(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(
            "SELECT count(*) FROM audit_log WHERE actor = 'steady' AND action = ANY(%s)",
            (self.committed,),
        ).fetchone()
        assert row is not None
        return int(row[0])


def fence_left(sandbox: Sandbox) -> tuple[int, int]:
    """(fence triggers, migctl replication slots) on the source."""
    with sandbox.source() as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'migctl\\_fence\\_%'),"
            " (SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'migctl\\_fence\\_%')"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@dataclass(frozen=True)
class Standby:
    running: int  # the standby service's running tasks
    serving: bool  # the listener forwards to the standby's target group
    target_fenced: int  # fence triggers on the target


def standby_of(sandbox: Sandbox) -> Standby:
    """The cutover's standby switch as the sandbox's AWS and the target have it now."""
    outputs = sandbox.state.outputs
    ecs, elbv2 = sandbox.aws("ecs"), sandbox.aws("elbv2")
    service = ecs.describe_services(
        cluster=outputs["ecsClusterName"], services=[outputs["ecsStandbyServiceName"]]
    )["services"][0]
    listener = elbv2.describe_listeners(ListenerArns=[outputs["albListenerArn"]])["Listeners"][0]
    forwards = listener["DefaultActions"][0]["TargetGroupArn"]
    with sandbox.target() as tgt:
        fenced = tgt.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'migctl\\_fence\\_%'"
        ).fetchone()
    assert fenced is not None
    return Standby(
        running=int(service["runningCount"]),
        serving=forwards == service["loadBalancers"][0]["targetGroupArn"],
        target_fenced=int(fenced[0]),
    )


IDLE = Standby(running=0, serving=False, target_fenced=0)


def way_back_left(sandbox: Sandbox) -> tuple[int, int, int]:
    """(replication slots on the target, subscriptions on the source, fence triggers on the
    target): what the way back holds."""
    with sandbox.target() as tgt, sandbox.source() as src:
        slots = tgt.execute("SELECT count(*) FROM pg_replication_slots").fetchone()
        fenced = tgt.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'migctl\\_fence\\_%'"
        ).fetchone()
        subs = src.execute("SELECT count(*) FROM pg_subscription").fetchone()
    assert slots is not None and subs is not None and fenced is not None
    return int(slots[0]), int(subs[0]), int(fenced[0])


def keys_now(sandbox: Sandbox, writer: str) -> list[str]:
    """The lines of a writer's keys file (``ecs`` or ``traffic``): what it committed, in order."""
    path = sandbox.dir / "logs" / f"{writer}.keys"
    return path.read_text().split() if path.exists() else []


def wait_for_keys(sandbox: Sandbox, writer: str, more_than: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(keys_now(sandbox, writer)) <= more_than:
        assert time.monotonic() < deadline, f"the {writer} writer committed nothing new"
        time.sleep(0.2)


def tables_match_eventually(sandbox: Sandbox, timeout: float = 60) -> dict[str, str]:
    """Poll `migctl validate` until every table matches (sequences aside: after a rollback the
    source's are ahead); the last verdicts per table."""
    deadline = time.monotonic() + timeout
    while True:
        proc = run(sandbox.env, "--output", "json", "validate")
        report = json.loads(proc.stdout.splitlines()[-1])
        verdicts = {t["table"]: t["status"] for t in report["tables"]}
        if set(verdicts.values()) == {"match"} or time.monotonic() > deadline:
            return verdicts
        time.sleep(1)


def checked_report(sandbox: Sandbox, journal: Path, result: dict[str, Any]) -> dict[str, Any]:
    """`migctl cutover report` of the cutover ``result`` (a run's or rollback's JSON result) in
    its three formats, each fact checked against the journal's own records, and no secret of
    the sandbox in any of them. Returns the JSON report."""
    cutover_id = str(result["cutover_id"])
    written = {}
    for fmt in ("html", "md", "json"):
        out = journal.with_name(f"{journal.stem}-{cutover_id}.{fmt}")
        proc = run(
            sandbox.env_for(journal),
            "--output", "json", "cutover", "report", "--cutover", cutover_id,
            "--format", fmt, "--out", str(out),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["path"] == str(out)
        written[fmt] = out.read_text()
    for fmt, text in written.items():
        for password in sandbox.passwords():
            assert password not in text, f"a sandbox password in the {fmt} report"
    report = json.loads(written["json"])
    mine = [r for r in records(journal) if r["cutover_id"] == cutover_id]

    def last(event: str, step: str | None = None) -> dict[str, Any]:
        return [r for r in mine if r["event"] == event and step in (None, r.get("step"))][-1]

    end = last("run_finished")
    assert (report["outcome"], report["exit_code"]) == (end["outcome"], end["exit_code"])
    assert (report["outcome"], report["exit_code"]) == (result["outcome"], result["exit_code"])
    assert report["reason"] == end["reason"] == result["reason"]
    assert report["image"] == last("cutover_started")["image"]
    assert report["manual_steps"] == end["manual_steps"] == result["manual_steps"]
    assert report["state"] == end["state"] == result["state"]
    assert [s["status"] for s in report["steps"]] == [s["status"] for s in result["steps"]]
    assert report["freeze"]["seconds"] == end["write_freeze_seconds"]
    assert report["freeze"]["seconds"] == result["write_freeze_seconds"]
    starts = [r for r in mine if r["event"] == "run_started"]
    assert [(r["mode"], r["started_at"], r["user"]) for r in report["runs"]] == [
        (r["mode"], r["ts"], r["user"]) for r in starts
    ]
    assert (
        report["systems"]["dms_task"] == last("step_finished", "preflight")["details"]["dms_task"]
    )
    assert re.fullmatch(r"\d+\.\d+", report["systems"]["source_server"] or "")
    assert (
        report["validation"]["baseline"]["compared"]
        == last("step_finished", "baseline")["details"]["compared"]
    )
    baseline_rows = [
        f"| {t['table']} | {t['status']} | {t['source_rows']:,} | {t['target_rows']:,} |"
        for t in report["validation"]["baseline"]["compared"]
    ]
    assert all(row in written["md"] for row in baseline_rows)
    synced = [r for r in mine if r["event"] == "step_finished" and r["step"] == "sync_sequences"]
    if synced:
        assert report["validation"]["sequences"] == synced[-1]["details"]["values"]
    proved = [r for r in mine if r["event"] == "step_finished" and r["step"] == "prove_freeze"]
    if proved:
        proof = report["freeze"]["proofs"][0]
        assert (proof["from_lsn"], proof["to_lsn"]) == (
            proved[-1]["details"]["proof"]["from_lsn"],
            proved[-1]["details"]["proof"]["to_lsn"],
        )
    deployments = [
        r["details"]["facts"]["id"]
        for r in mine
        if r["event"] == "note" and (r.get("details") or {}).get("rollout_event") == "deployment"
    ]
    assert report["rollout"]["deployments"] == list(dict.fromkeys(deployments))
    undone = [r["step"] for r in mine if r["event"] == "undo_finished"]
    assert [s["step"] for s in report["timeline"] if s["kind"] == "undo"] == undone
    assert written["html"].count('<rect class="bar ') == len(report["timeline"])
    assert f'<rect class="freeze" data-seconds="{report["freeze"]["seconds"]}"' in written["html"]
    return dict(report)
