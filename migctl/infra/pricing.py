"""A monthly cost estimate of a planned stack, from the price table kept in the repo.

Only what costs money by the hour is priced: NAT gateways and their public
IPv4 addresses, Aurora instances, the DMS instance, the ALB, and Fargate vCPU
and memory. Usage-based charges are listed as excluded, not guessed. The table
(``migctl/data/prices-<region>.json``) states its region and the date it was
taken; the estimate carries both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from migctl.errors import ConfigError

DEFAULT_TABLE = "prices-us-east-1.json"

NAT = "aws:ec2/natGateway:NatGateway"
EIP = "aws:ec2/eip:Eip"
AURORA_INSTANCE = "aws:rds/clusterInstance:ClusterInstance"
DMS_INSTANCE = "aws:dms/replicationInstance:ReplicationInstance"
ALB = "aws:lb/loadBalancer:LoadBalancer"
SERVICE = "aws:ecs/service:Service"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"


class PricedResource(Protocol):
    """What the estimate reads from a planned resource."""

    @property
    def type(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def inputs(self) -> Mapping[str, Any]: ...
    @property
    def component(self) -> str | None: ...


@dataclass(frozen=True)
class PriceTable:
    region: str
    taken_on: str
    currency: str
    source: str
    excluded: str
    hours_per_month: float
    nat_gateway_hour: float
    public_ipv4_hour: float
    alb_hour: float
    fargate_vcpu_hour: float
    fargate_gb_hour: float
    aurora_instance_hour: Mapping[str, float]
    dms_instance_hour: Mapping[str, float]
    dms_multi_az_factor: float


@dataclass(frozen=True)
class CostItem:
    item: str
    component: str
    quantity: float
    unit: str
    unit_price_usd: float
    monthly_usd: float


@dataclass(frozen=True)
class CostEstimate:
    total: float
    items: tuple[CostItem, ...]
    region: str
    taken_on: str
    currency: str
    excluded: str
    unpriced: tuple[str, ...]


def load_price_table(path: Path | None = None) -> PriceTable:
    """The table shipped with migctl, or one at ``path``; a bad table is a ConfigError."""
    try:
        if path is None:
            text = resources.files("migctl").joinpath("data", DEFAULT_TABLE).read_text()
        else:
            text = path.read_text()
        data = json.loads(text)
        return PriceTable(
            region=str(data["region"]),
            taken_on=str(data["taken_on"]),
            currency=str(data["currency"]),
            source=str(data["source"]),
            excluded=str(data["excluded"]),
            hours_per_month=float(data["hours_per_month"]),
            nat_gateway_hour=float(data["nat_gateway_hour"]),
            public_ipv4_hour=float(data["public_ipv4_hour"]),
            alb_hour=float(data["alb_hour"]),
            fargate_vcpu_hour=float(data["fargate_vcpu_hour"]),
            fargate_gb_hour=float(data["fargate_gb_hour"]),
            aurora_instance_hour=_prices(data["aurora_postgresql_instance_hour"]),
            dms_instance_hour=_prices(data["dms_instance_hour_single_az"]),
            dms_multi_az_factor=float(data["dms_multi_az_factor"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        where = path or DEFAULT_TABLE
        raise ConfigError(f"price table {where} is unreadable: {exc!r}") from None


def _prices(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise TypeError("expected an object of instance class -> hourly price")
    return {str(k): float(v) for k, v in value.items()}


def estimate(resources_: Sequence[PricedResource], prices: PriceTable) -> CostEstimate:
    """Price every hourly-billed resource of the graph for one month."""
    items: list[CostItem] = []
    unpriced: list[str] = []
    hours = prices.hours_per_month

    def add(item: str, res: PricedResource, quantity: float, unit: str, price: float) -> None:
        monthly = round(quantity * price * hours, 2)
        items.append(CostItem(item, res.component or "-", quantity, unit, price, monthly))

    task_definitions = {r.name: r for r in resources_ if r.type == TASK_DEFINITION}
    for res in resources_:
        if res.type == NAT:
            add(f"NAT gateway {res.name}", res, 1, "gateway-hour", prices.nat_gateway_hour)
        elif res.type == EIP:
            add(f"public IPv4 {res.name}", res, 1, "address-hour", prices.public_ipv4_hour)
        elif res.type == ALB:
            add(f"load balancer {res.name}", res, 1, "ALB-hour", prices.alb_hour)
        elif res.type == AURORA_INSTANCE:
            cls = str(res.inputs.get("instanceClass"))
            if cls not in prices.aurora_instance_hour:
                unpriced.append(f"{res.name} ({cls})")
                continue
            add(
                f"Aurora {cls} {res.name}",
                res,
                1,
                "instance-hour",
                prices.aurora_instance_hour[cls],
            )
        elif res.type == DMS_INSTANCE:
            cls = str(res.inputs.get("replicationInstanceClass"))
            if cls not in prices.dms_instance_hour:
                unpriced.append(f"{res.name} ({cls})")
                continue
            multi_az = bool(res.inputs.get("multiAz"))
            factor = prices.dms_multi_az_factor if multi_az else 1
            label = f"DMS {cls}{' Multi-AZ' if multi_az else ''} {res.name}"
            add(label, res, 1, "instance-hour", prices.dms_instance_hour[cls] * factor)
        elif res.type == SERVICE:
            task = task_definitions.get(
                str(res.inputs.get("taskDefinition", "")).rsplit("/", 1)[-1]
            )
            if task is None:
                unpriced.append(f"{res.name} (task definition not found)")
                continue
            count = float(res.inputs.get("desiredCount") or 0)
            if count == 0:  # idle (the cutover's standby): it costs only while a cutover runs
                continue
            vcpu = count * float(task.inputs["cpu"]) / 1024
            memory_gb = count * float(task.inputs["memory"]) / 1024
            add(f"Fargate vCPU {res.name}", res, vcpu, "vCPU-hour", prices.fargate_vcpu_hour)
            add(f"Fargate memory {res.name}", res, memory_gb, "GB-hour", prices.fargate_gb_hour)
    return CostEstimate(
        total=round(sum(i.monthly_usd for i in items), 2),
        items=tuple(items),
        region=prices.region,
        taken_on=prices.taken_on,
        currency=prices.currency,
        excluded=prices.excluded,
        unpriced=tuple(unpriced),
    )
