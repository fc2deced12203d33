"""Fixtures the unit tests share: the rollout tests' ECS world (tests/unit/rollout_support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rollout_support import Calls, World, build_world, deploying_moto, spy_calls


@pytest.fixture
def patched_moto(aws: None) -> Iterator[None]:
    """moto with ECS deployments that move (migctl.sandbox.moto_ecs), for the test."""
    with deploying_moto():
        yield


@pytest.fixture
def world(patched_moto: None) -> World:
    """One ECS service with one task definition revision, its deployment completed."""
    return build_world()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Every AWS call the test makes through botocore, in order."""
    return spy_calls(monkeypatch)
