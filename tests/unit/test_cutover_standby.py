"""The standby switch's reads of AWS that the sandbox cannot exercise (moto runs no task)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from migctl.cutover.standby import _not_stopped, forwards_to

CLUSTER, SERVICE = "payments", "payments-standby"
GROUP_A = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/a/1"
GROUP_B = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/b/2"
LISTENER = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/lb/1/2"


def _client(service: str) -> Any:
    return boto3.client(
        service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )


@pytest.mark.parametrize(
    ("last_statuses", "alive"),
    [
        ({"t1": "RUNNING", "t2": "STOPPED"}, 1),
        ({"t1": "DEACTIVATING", "t2": "STOPPING"}, 2),  # on their way out: they may still write
        ({"t1": "STOPPED", "t2": "STOPPED"}, 0),
    ],
)
def test_a_task_counts_until_it_is_stopped(last_statuses: dict[str, str], alive: int) -> None:
    ecs = _client("ecs")
    arns = {
        name: f"arn:aws:ecs:us-east-1:123456789012:task/{CLUSTER}/{name}" for name in last_statuses
    }
    with Stubber(ecs) as stub:
        for desired, name in (("RUNNING", "t1"), ("STOPPED", "t2")):
            stub.add_response(
                "list_tasks",
                {"taskArns": [arns[name]]},
                {"cluster": CLUSTER, "serviceName": SERVICE, "desiredStatus": desired},
            )
        stub.add_response(
            "describe_tasks",
            {"tasks": [{"taskArn": arns[n], "lastStatus": s} for n, s in last_statuses.items()]},
            {"cluster": CLUSTER, "tasks": list(arns.values())},
        )
        assert _not_stopped(ecs, CLUSTER, SERVICE) == alive
        stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("actions", "group"),
    [
        ([{"Type": "forward", "TargetGroupArn": GROUP_A}], GROUP_A),
        (
            [
                {
                    "Type": "forward",
                    "TargetGroupArn": GROUP_B,
                    "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": GROUP_B, "Weight": 1}]},
                }
            ],
            GROUP_B,
        ),
        (  # a weighted split is neither group: the switch refuses to guess
            [
                {
                    "Type": "forward",
                    "ForwardConfig": {
                        "TargetGroups": [
                            {"TargetGroupArn": GROUP_A, "Weight": 50},
                            {"TargetGroupArn": GROUP_B, "Weight": 50},
                        ]
                    },
                }
            ],
            None,
        ),
        (  # a weight of 0 takes no traffic
            [
                {
                    "Type": "forward",
                    "ForwardConfig": {
                        "TargetGroups": [
                            {"TargetGroupArn": GROUP_A, "Weight": 0},
                            {"TargetGroupArn": GROUP_B, "Weight": 1},
                        ]
                    },
                }
            ],
            GROUP_B,
        ),
        ([{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "503"}}], None),
    ],
)
def test_the_listener_forwards_to_one_group_or_none(
    actions: list[dict[str, Any]], group: str | None
) -> None:
    elbv2 = _client("elbv2")
    with Stubber(elbv2) as stub:
        stub.add_response(
            "describe_listeners",
            {"Listeners": [{"ListenerArn": LISTENER, "DefaultActions": actions}]},
            {"ListenerArns": [LISTENER]},
        )
        assert forwards_to(elbv2, LISTENER) == group
