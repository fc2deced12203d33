"""The five components of the stack and the small helpers they share.

Each component is a ``pulumi.ComponentResource`` with type token
``migctl:infra:<Name>`` and a typed ``<Name>Args`` dataclass. Children get
``parent=self`` and names built from the component's environment suffix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi


def assume_role_policy(*services: str) -> str:
    """A trust policy letting the given AWS service principals assume a role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": list(services)},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )


def policy_document(statements: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def json_output(value: Any) -> pulumi.Output[str]:
    """``json.dumps`` of a structure that may hold Outputs, as one Output."""
    return pulumi.Output.json_dumps(value)


__all__ = ["assume_role_policy", "json_output", "policy_document"]
