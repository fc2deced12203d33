"""Constants and helpers shared by the infra tests (imported as a plain module)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

from infra_pulumi.offline import Evaluation

REPO = Path(__file__).resolve().parents[2]
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/payment-service:2.14.0"
SOURCE_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:onprem/payments-Xy12Ab"
SOURCE_KMS_KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1111aaaa-22bb-33cc-44dd-555555eeeeee"
CERTIFICATE_ARN = (
    "arn:aws:acm:us-east-1:123456789012:certificate/0f0e0d0c-0b0a-0908-0706-050403020100"
)
SOURCE_HOST = "pg-payments.dc1.corp.internal"

Evaluate = Callable[..., Evaluation]


def policy(resource_inputs: Mapping[str, object]) -> dict[str, object]:
    """The parsed IAM policy document of a RolePolicy's inputs."""
    value = resource_inputs["policy"]
    assert isinstance(value, str)
    parsed = json.loads(value)
    assert isinstance(parsed, dict)
    return parsed


def container_definitions(ev: Evaluation) -> list[dict[str, object]]:
    value = ev.one("aws:ecs/taskDefinition:TaskDefinition").inputs["containerDefinitions"]
    assert isinstance(value, str)
    return json.loads(value)  # type: ignore[no-any-return]
