"""What every cutover step works with: settings, clients, both databases, timing, progress.

Steps are functions of a :class:`CutoverContext`. It builds nothing itself:
the CLI hands it an ``AwsClients`` (or a test a stand-in with ``.client``)
and the resolved databases. Database sessions are short-lived, one per use,
and always writable (``default_transaction_read_only = off``), because the
cutover's own statements must still run on a source it has frozen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from migctl.aws import AwsClients
from migctl.db import Database, connect, resolve_database
from migctl.dms.task import resolve_task
from migctl.errors import CheckFailed, ConfigError
from migctl.infra.outputs import load_cached_outputs, resolve
from migctl.poll import Clock, Done, Pending, Round, poll
from migctl.rollout.plan import RolloutOptions, resolve_gate, resolve_target

if TYPE_CHECKING:
    import psycopg

    from migctl.alarms import AlarmSelector
    from migctl.config import Settings
    from migctl.dms.task import TaskRef
    from migctl.rollout.plan import RolloutOptions

APPLICATION_NAME = "migctl-cutover"


@dataclass(frozen=True)
class Timing:
    """How long each wait may take and how often it polls; injectable for tests."""

    interval: float = 2.0
    wait_timeout: float = 600.0
    marker_timeout: float = 300.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


Report = Callable[[str, Mapping[str, Any]], None]


def _ignore(_message: str, _details: Mapping[str, Any]) -> None:
    return None


@dataclass
class CutoverContext:
    settings: Settings
    aws: AwsClients  # tests pass anything with a client(service) method
    source: Database
    target: Database
    image: str | None = None
    timing: Timing = field(default_factory=Timing)
    cutover_id: str = ""
    report: Report = _ignore  # a progress note from inside the current step
    # During a rollback: what each step's undo found, by step name (this run's and earlier ones').
    undone: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    # What each step of this cutover that is done found, by step name (before each step runs).
    done: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    _cache: dict[str, Any] = field(default_factory=dict)

    @contextmanager
    def source_conn(self) -> Iterator[psycopg.Connection[Any]]:
        with _writable(self.source) as conn:
            yield conn

    @contextmanager
    def target_conn(self) -> Iterator[psycopg.Connection[Any]]:
        with _writable(self.target) as conn:
            yield conn

    def reporter(self) -> Callable[[str], None]:
        """A progress reporter that stays quiet while the message does not change (polls)."""
        last: list[str] = []

        def say(message: str) -> None:
            if last != [message]:
                last[:] = [message]
                self.report(message, {})

        return say

    def task_ref(self) -> TaskRef:
        """The DMS task: ``[dms] task``, else the stack output ``dmsReplicationTaskArn``."""
        dms = self.settings.dms
        return self._task(
            "task", dms.task, "dmsReplicationTaskArn", "DMS replication task", "[dms] task",
            instance=dms.instance,
        )  # fmt: skip

    def reverse_task_ref(self) -> TaskRef:
        """The way back's DMS task: ``[cutover] reverse_task``, else the stack output
        ``dmsReverseTaskArn``."""
        return self._task(
            "reverse",
            self.settings.cutover.reverse_task,
            "dmsReverseTaskArn",
            "reverse DMS task (fallback = reverse-replication)",
            "[cutover] reverse_task",
        )

    def _task(
        self, key: str, value: str | None, output: str, what: str, flag: str, **where: Any
    ) -> TaskRef:
        if key not in self._cache:
            name = resolve(self.settings, value, output, what=what, flag=flag)
            self._cache[key] = resolve_task(
                self.aws.client("dms"), name, instance_identifier=where.get("instance")
            )
        ref: TaskRef = self._cache[key]
        return ref

    def gate_alarms(self) -> AlarmSelector:
        """The rollout's gate alarms; the cutover refuses to run without any."""
        if "gate" not in self._cache:
            gate = resolve_gate(self.settings, ())
            if gate is None:
                raise ConfigError(
                    "no gate alarms: the cutover gates on alarms before and after the rollout",
                    hint="set [ecs] gate_alarms or [alarms] prefix/names, or cache the stack "
                    "output alarmNames with 'migctl outputs'",
                )
            self._cache["gate"] = gate
        selector: AlarmSelector = self._cache["gate"]
        return selector

    def rollout_options(self) -> RolloutOptions:
        """What ``migctl rollout`` would use: ``[ecs]`` and the stack outputs, ``[cutover] image``."""
        if "rollout" not in self._cache:
            target = resolve_target(self.settings, cluster=None, service=None, container=None)
            ecs = self.settings.ecs
            self._cache["rollout"] = RolloutOptions(
                cluster=target.cluster,
                service=target.service,
                image=self.image,
                container=target.container,
                bake_seconds=ecs.bake_seconds,
                timeout=ecs.timeout_seconds,
                interval=ecs.interval_seconds,
                gate=self.gate_alarms(),
                allow_insufficient_data=self.settings.alarms.allow_insufficient_data,
                force=True,  # the runbook's own resume logic decides what is deployed already
            )
        options: RolloutOptions = self._cache["rollout"]
        return options

    def wait_until(
        self,
        what: str,
        probe: Callable[[], tuple[bool, str]],
        *,
        timeout: float | None = None,
    ) -> str:
        """Poll ``probe`` until it says done; CheckFailed naming what was still missing.

        ``probe`` returns (done, why): the reason is reported each time it changes.
        """
        limit = self.timing.wait_timeout if timeout is None else timeout
        last: str | None = None

        def step(_: Round) -> Done[str] | Pending[str]:
            nonlocal last
            done, why = probe()
            if done:
                return Done(why)
            if why != last:
                self.report(f"waiting for {what}: {why}", {})
                last = why
            return Pending(why, reason=why)

        def throttled(what_was: str, delay: float) -> None:
            self.report(f"waiting for {what}: {what_was}; next poll in {delay:g}s", {})

        result = poll(
            step,
            timeout=limit,
            interval=self.timing.interval,
            clock=Clock(self.timing.clock, self.timing.sleep),
            on_backoff=throttled,
            what=what,
        )
        if result.done and result.value is not None:
            return result.value
        raise CheckFailed(f"{what}: not reached within {limit:g}s: {result.value or 'throttled'}")


@contextmanager
def _writable(db: Database) -> Iterator[psycopg.Connection[Any]]:
    conn = connect(db, application_name=APPLICATION_NAME, autocommit=True)
    try:
        conn.execute("SET default_transaction_read_only = off")
        yield conn
    finally:
        conn.close()


def build_context(settings: Settings, aws: AwsClients) -> CutoverContext:
    """Both databases (flags are not a cutover's business: ``[source]``/``[target]``, the
    target falling back to the stack output ``auroraSecretArn``) and the timing from config."""

    clients = aws if isinstance(aws, AwsClients) else None
    source = resolve_database(settings.source, label="source", aws=clients)
    target_secret = None
    t = settings.target
    if not (t.dsn or t.dsn_env or t.secret_arn):
        cached = load_cached_outputs(settings).get("auroraSecretArn")
        target_secret = cached if isinstance(cached, str) and cached else None
    target = resolve_database(t, label="target", aws=clients, secret_arn=target_secret)
    conf = settings.cutover
    timing = Timing(
        interval=conf.interval_seconds,
        wait_timeout=conf.wait_timeout_seconds,
        marker_timeout=conf.marker_timeout_seconds,
    )
    return CutoverContext(settings, aws, source, target, timing=timing)
