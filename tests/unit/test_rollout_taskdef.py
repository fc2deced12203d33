"""Copying a task definition for re-registration, as real ECS describes it (read-only fields)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import botocore.session
import pytest

from migctl.errors import UsageError
from migctl.rollout.taskdef import READ_ONLY_FIELDS, diff_lines, registrable, short_name, with_image

DESCRIBED: dict[str, Any] = {
    # The shape real ECS answers with, including the output-only fields.
    "taskDefinitionArn": "arn:aws:ecs:eu-west-1:111122223333:task-definition/payments:7",
    "family": "payments",
    "revision": 7,
    "status": "ACTIVE",
    "containerDefinitions": [
        {
            "name": "app",
            "image": "repo/app:v1",
            "essential": True,
            "secrets": [{"name": "DB", "valueFrom": "arn"}],
        },
        {"name": "envoy", "image": "envoy:v1.29", "essential": False},
    ],
    "networkMode": "awsvpc",
    "requiresAttributes": [{"name": "com.amazonaws.ecs.capability.logging-driver.awslogs"}],
    "compatibilities": ["EC2", "FARGATE"],
    "requiresCompatibilities": ["FARGATE"],
    "cpu": "512",
    "memory": "1024",
    "registeredAt": dt.datetime(2025, 1, 2, tzinfo=dt.UTC),
    "registeredBy": "arn:aws:sts::111122223333:assumed-role/deployer/ci",
    "deregisteredAt": None,
    "runtimePlatform": {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
}


def register_input_fields() -> set[str]:
    model = botocore.session.get_session().get_service_model("ecs")
    return set(model.operation_model("RegisterTaskDefinition").input_shape.members)


def test_copy_drops_every_read_only_field_and_fits_the_register_call() -> None:
    allowed = register_input_fields()
    copy = with_image(DESCRIBED, container="app", image="repo/app:v2", allowed_fields=allowed)
    assert not set(copy.params) & READ_ONLY_FIELDS
    assert set(copy.params) <= allowed
    assert copy.params["runtimePlatform"] == DESCRIBED["runtimePlatform"]
    assert {"registeredAt", "registeredBy", "requiresAttributes", "compatibilities"} <= set(
        copy.dropped_fields
    )
    images = {c["name"]: c["image"] for c in copy.params["containerDefinitions"]}
    assert images == {"app": "repo/app:v2", "envoy": "envoy:v1.29"}
    assert (
        DESCRIBED["containerDefinitions"][0]["image"] == "repo/app:v1"
    )  # the original is untouched
    assert (copy.old_image, copy.new_image, copy.container) == ("repo/app:v1", "repo/app:v2", "app")
    # Every read-only field we drop is really output-only in botocore's model.
    assert not READ_ONLY_FIELDS & allowed


def test_reserved_aws_tags_are_not_copied() -> None:
    tags = [{"key": "team", "value": "pay"}, {"key": "aws:cloudformation:stack-name", "value": "x"}]
    copy = with_image(DESCRIBED, container="envoy", image="envoy:v1.30", tags=tags)
    assert copy.register_kwargs()["tags"] == [{"key": "team", "value": "pay"}]


def test_containers_must_be_named_when_there_are_several() -> None:
    with pytest.raises(UsageError, match="2 containers: app, envoy"):
        with_image(DESCRIBED, container=None, image="x")
    with pytest.raises(UsageError, match="no container named 'web'; its containers: app, envoy"):
        with_image(DESCRIBED, container="web", image="x")
    with pytest.raises(UsageError, match="must not be empty"):
        with_image(DESCRIBED, container="app", image="  ")


def test_diff_shows_only_the_image_change() -> None:
    copy = with_image(DESCRIBED, container="app", image="repo/app:v2")
    lines = diff_lines(DESCRIBED, copy.params, old_label="payments:7", new_label="new")
    changed = [
        line
        for line in lines
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    ]
    assert changed == ['-      "image": "repo/app:v1",', '+      "image": "repo/app:v2",']
    assert lines[0] == "--- payments:7"


def test_registrable_and_short_name() -> None:
    params, dropped = registrable({"family": "f", "revision": 3, "cpu": None})
    assert params == {"family": "f"} and dropped == ("revision",)
    assert short_name(DESCRIBED["taskDefinitionArn"]) == "payments:7"
    assert short_name(None) == "-"
