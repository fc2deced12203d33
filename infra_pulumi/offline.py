"""Run the program offline under ``pulumi.runtime.set_mocks`` and record the whole graph.

``migctl plan`` and the infra tests both use :func:`evaluate`. The fake cloud
(:class:`FakeCloud`) answers every resource registration with its inputs plus
the computed outputs the program reads (ARNs, ``arnSuffix``, the managed
master secret, the DMS task ARN, ...), and answers the few invokes the program
makes (availability zones, region, account, a generated password).

Pulumi keeps its runtime state (settings, root stack, config) in context
variables. Each evaluation runs in a fresh :class:`contextvars.Context` on its
own event loop, so evaluations do not leak into each other or into the caller:
the caller's root stack and config are untouched. (Pulumi does promote the
first value ever set of each setting to the default of every context; the
evaluation therefore sets every setting it relies on, pending outputs included.)
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import wait_for_rpcs
from pulumi.runtime.sync_await import _sync_await

ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"
COMPONENT_PREFIX = "migctl:infra:"
FAKE_TASK_RESOURCE_ID = "ABCDEFGHIJKLMNOP"


@dataclass(frozen=True)
class RecordedResource:
    """One registered resource: its type token, logical name, inputs and component."""

    type: str
    name: str
    inputs: Mapping[str, Any] = field(repr=False)
    component: str | None
    custom: bool
    ignore_changes: tuple[str, ...] = ()  # the resource option, as the engine receives it


@dataclass(frozen=True)
class Evaluation:
    """The graph the program built, its exported outputs and the warnings it logged."""

    resources: tuple[RecordedResource, ...]
    outputs: Mapping[str, Any]
    warnings: tuple[str, ...]
    invokes: tuple[str, ...]

    def of_type(self, token: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == token]

    def one(self, token: str) -> RecordedResource:
        """The single resource of a type; LookupError when there is not exactly one."""
        return _single(self.of_type(token), f"of type {token}")

    def named(self, name: str) -> RecordedResource:
        """The resource with this logical name; LookupError when there is none."""
        return _single([r for r in self.resources if r.name == name], f"named {name}")


def _single(found: list[RecordedResource], what: str) -> RecordedResource:
    if len(found) != 1:
        raise LookupError(f"{len(found)} resources {what}, not one")
    return found[0]


class _Monitor(pulumi.runtime.mocks.MockMonitor):
    """The mock monitor, also keeping each registration's ``ignoreChanges`` (mocks never see
    resource options)."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.ignore_changes: dict[tuple[str, str], tuple[str, ...]] = {}

    def RegisterResource(self, request: Any) -> Any:
        self.ignore_changes[(request.type, request.name)] = tuple(request.ignoreChanges)
        return super().RegisterResource(request)  # type: ignore[no-untyped-call]


class FakeCloud(pulumi.runtime.Mocks):
    """Answers registrations with inputs plus computed outputs, and records the inputs."""

    def __init__(self, region: str = DEFAULT_REGION, zones: str = "abcd") -> None:
        self.region = region
        self.zones = zones
        self.inputs: dict[tuple[str, str], dict[str, Any]] = {}
        self.custom: dict[tuple[str, str], bool] = {}
        self.invokes: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.inputs[(args.typ, args.name)] = dict(args.inputs)
        self.custom[(args.typ, args.name)] = bool(args.custom)
        return f"{args.name}-id", {
            **args.inputs,
            **self._computed(args.typ, args.name, args.inputs),
        }

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.invokes.append(args.token)
        region = self.region
        answers: dict[str, dict[str, Any]] = {
            "aws:index/getAvailabilityZones:getAvailabilityZones": {
                "names": [f"{region}{z}" for z in self.zones],
                "zoneIds": [f"use1-az{i}" for i in range(1, len(self.zones) + 1)],
            },
            "aws:index/getRegion:getRegion": {"region": region, "name": region},
            "aws:index/getCallerIdentity:getCallerIdentity": {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/offline",
                "userId": "OFFLINE",
            },
            # Generated at run time: no password value is ever written in the repo.
            "aws:secretsmanager/getRandomPassword:getRandomPassword": {
                "randomPassword": secrets.token_urlsafe(24),
            },
        }
        return answers.get(args.token, {}), []

    def _computed(self, typ: str, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Outputs AWS would compute: ARNs, auto-names, suffixes, endpoints."""
        service = typ.split(":")[1].split("/", maxsplit=1)[0]
        physical = str(inputs.get("name") or name)
        kind = typ.rsplit(":", 1)[-1].lower()
        arn = f"arn:aws:{service}:{self.region}:{ACCOUNT_ID}:{kind}/{physical}"
        out: dict[str, Any] = {"arn": arn, "name": physical}
        if typ == "aws:lb/loadBalancer:LoadBalancer":
            out["arnSuffix"] = f"app/{physical}/50dc6c495c0c9188"
            out["dnsName"] = f"{physical}-1234567890.{self.region}.elb.amazonaws.com"
        elif typ == "aws:lb/targetGroup:TargetGroup":
            out["arnSuffix"] = f"targetgroup/{physical}/73e2d6bc24d8a067"
        elif typ == "aws:rds/cluster:Cluster":
            ident = inputs.get("clusterIdentifier", name)
            host = f"{ident}.cluster-abcdefghijkl.{self.region}.rds.amazonaws.com"
            out["endpoint"] = host
            out["readerEndpoint"] = host.replace(".cluster-", ".cluster-ro-")
            out["port"] = 5432
            out["masterUserSecrets"] = [
                {
                    "secretArn": f"arn:aws:secretsmanager:{self.region}:{ACCOUNT_ID}"
                    f":secret:rds!cluster-{ident}-AbCdEf",
                    "kmsKeyId": inputs.get("masterUserSecretKmsKeyId"),
                    "secretStatus": "active",
                }
            ]
        elif typ == "aws:dms/replicationInstance:ReplicationInstance":
            out["replicationInstanceArn"] = (
                f"arn:aws:dms:{self.region}:{ACCOUNT_ID}:rep:{inputs['replicationInstanceId']}"
            )
        elif typ == "aws:dms/endpoint:Endpoint":
            out["endpointArn"] = f"arn:aws:dms:{self.region}:{ACCOUNT_ID}:endpoint:{name}"
        elif typ == "aws:dms/replicationTask:ReplicationTask":
            out["replicationTaskArn"] = (
                f"arn:aws:dms:{self.region}:{ACCOUNT_ID}:task:{FAKE_TASK_RESOURCE_ID}"
            )
        elif typ == "aws:kms/key:Key":
            out["keyId"] = f"{name}-key-id"
        return out


def _component_of(urn: str) -> tuple[str, str, str | None]:
    """(type, name, component) of a URN like ``...::migctl:infra:Network$aws:ec2/vpc:Vpc::n``."""
    _, _, qualified_type, name = urn.split("::", 3)
    chain = qualified_type.split("$")
    parent = chain[-2] if len(chain) > 1 else ""
    component = parent[len(COMPONENT_PREFIX) :] if parent.startswith(COMPONENT_PREFIX) else None
    return chain[-1], name, component


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def evaluate(
    program: Callable[[], None],
    *,
    config: Mapping[str, str],
    stack: str = "test",
    project: str = "migctl",
    preview: bool = False,
    cloud: FakeCloud | None = None,
    root_directory: str | None = None,
) -> Evaluation:
    """Run ``program`` under mocks with ``config`` (fully qualified keys) and record it all.

    ``cloud`` replaces the default fake (for another region or fewer zones).
    ``root_directory`` is what ``pulumi.get_root_directory()`` answers (the folder of
    ``Pulumi.yaml`` when the engine runs the program); None by default.
    Exceptions raised by the program propagate unchanged (config errors are
    ``pulumi.RunError`` subclasses).
    """
    loop = asyncio.new_event_loop()
    try:
        return contextvars.Context().run(
            _evaluate, loop, program, dict(config), stack, project, preview, cloud, root_directory
        )
    finally:
        # A program that raised leaves registrations in flight: cancel them with the loop.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        asyncio.set_event_loop(None)


def _evaluate(
    loop: asyncio.AbstractEventLoop,
    program: Callable[[], None],
    config: dict[str, str],
    stack: str,
    project: str,
    preview: bool,
    cloud: FakeCloud | None,
    root_directory: str | None,
) -> Evaluation:
    asyncio.set_event_loop(loop)
    # Pulumi's context properties share their first value as the default of every
    # context; give this evaluation its own set of pending outputs.
    pulumi_settings.SETTINGS.outputs = set()
    logger = logging.Logger("migctl.offline")
    collect = _Collect()
    logger.addHandler(collect)
    cloud = cloud or FakeCloud(region=config.get("aws:region", DEFAULT_REGION))
    monitor = _Monitor(cloud)
    pulumi.runtime.set_all_config(config)
    pulumi.runtime.set_mocks(
        cloud, project=project, stack=stack, preview=preview, logger=logger, monitor=monitor
    )
    pulumi_settings.SETTINGS.root_directory = root_directory  # set_mocks leaves it as it was
    root = pulumi_settings.get_root_resource()
    program()
    _sync_await(wait_for_rpcs())
    exported = getattr(root, "outputs", {})
    resolved: Any = _sync_await(pulumi.Output.from_input(exported).future())
    outputs: dict[str, Any] = resolved or {}
    _sync_await(wait_for_rpcs())
    resources = []
    for urn in monitor.resources:
        typ, name, component = _component_of(urn)
        resources.append(
            RecordedResource(
                type=typ,
                name=name,
                inputs=cloud.inputs.get((typ, name), {}),
                component=component,
                custom=cloud.custom.get((typ, name), True),
                ignore_changes=monitor.ignore_changes.get((typ, name), ()),
            )
        )
    return Evaluation(
        resources=tuple(resources),
        outputs=outputs,
        warnings=tuple(collect.messages),
        invokes=tuple(cloud.invokes),
    )
