"""ECS task definitions: copy one for re-registration, swap a container's image, diff two.

``describe_task_definition`` answers with fields that ``register_task_definition``
refuses (``taskDefinitionArn``, ``revision``, ``status``, ``registeredAt`` ...).
A copy keeps only what can be registered again, so the new revision differs
from the old one by the image and nothing else.
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from migctl.errors import UsageError

# Output-only fields of a TaskDefinition (botocore's ECS model, 2024-2025).
READ_ONLY_FIELDS = frozenset(
    {
        "taskDefinitionArn",
        "revision",
        "status",
        "requiresAttributes",
        "compatibilities",
        "registeredAt",
        "registeredBy",
        "deregisteredAt",
        "deleteRequestedAt",
    }
)
# ECS refuses user tags whose key starts with "aws:" (CloudFormation adds some).
RESERVED_TAG_PREFIX = "aws:"
# What became of a revision migctl rolled out: "baked" (it completed its bake) or
# "rolled-back" (migctl took it off the service). A copy never inherits it.
OUTCOME_TAG = "migctl:rollout-outcome"


@dataclass(frozen=True)
class TaskDefinitionCopy:
    """What to pass to ``register_task_definition``: the copy (with the new image) and its tags."""

    family: str
    container: str
    old_image: str
    new_image: str
    params: Mapping[str, Any]
    tags: tuple[Mapping[str, str], ...]
    dropped_fields: tuple[str, ...]

    def register_kwargs(self) -> dict[str, Any]:
        kwargs = copy.deepcopy(dict(self.params))
        if self.tags:
            kwargs["tags"] = [dict(t) for t in self.tags]
        return kwargs


def container_names(task_definition: Mapping[str, Any]) -> list[str]:
    return [c["name"] for c in task_definition.get("containerDefinitions", [])]


def choose_container(task_definition: Mapping[str, Any], wanted: str | None) -> str:
    """The container to update: the named one, or the only one. UsageError (exit 2) otherwise."""
    names = container_names(task_definition)
    family = task_definition.get("family", "?")
    if wanted is not None:
        if wanted not in names:
            raise UsageError(
                f"task definition {family} has no container named {wanted!r}; "
                f"its containers: {', '.join(names) or '(none)'}"
            )
        return wanted
    if len(names) == 1:
        return names[0]
    raise UsageError(
        f"task definition {family} has {len(names)} containers: {', '.join(names)}",
        hint="choose one with --container NAME or [ecs] container",
    )


def registrable(
    task_definition: Mapping[str, Any], allowed_fields: Collection[str] | None = None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A deep copy without read-only fields (and, given the API's input fields, without any
    field the register call does not take). Returns the copy and the names dropped."""
    params: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in task_definition.items():
        if key in READ_ONLY_FIELDS or (allowed_fields is not None and key not in allowed_fields):
            dropped.append(key)
        elif value is not None:
            params[key] = copy.deepcopy(value)
    return params, tuple(sorted(dropped))


def with_image(
    task_definition: Mapping[str, Any],
    *,
    container: str | None,
    image: str,
    tags: Iterable[Mapping[str, Any]] = (),
    allowed_fields: Collection[str] | None = None,
) -> TaskDefinitionCopy:
    """Copy the task definition for registration with ``container``'s image set to ``image``."""
    if not image.strip():
        raise UsageError("--image must not be empty")
    name = choose_container(task_definition, container)
    params, dropped = registrable(task_definition, allowed_fields)
    old_image = ""
    for definition in params["containerDefinitions"]:
        if definition["name"] == name:
            old_image = definition.get("image", "")
            definition["image"] = image
    kept_tags = tuple(
        {"key": t["key"], "value": t.get("value", "")}
        for t in tags
        if not t["key"].startswith(RESERVED_TAG_PREFIX) and t["key"] != OUTCOME_TAG
    )
    return TaskDefinitionCopy(
        family=params["family"],
        container=name,
        old_image=old_image,
        new_image=image,
        params=params,
        tags=kept_tags,
        dropped_fields=dropped,
    )


def diff_lines(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    old_label: str = "current",
    new_label: str = "new",
) -> tuple[str, ...]:
    """A unified diff of two task definitions as sorted JSON (read-only fields left out)."""
    old_params, _ = registrable(old)
    new_params, _ = registrable(new)
    return tuple(
        difflib.unified_diff(
            _lines(old_params),
            _lines(new_params),
            fromfile=old_label,
            tofile=new_label,
            lineterm="",
        )
    )


def _lines(value: Mapping[str, Any]) -> list[str]:
    return json.dumps(value, indent=2, sort_keys=True, default=str).splitlines()


def container_images(task_definition: Mapping[str, Any]) -> dict[str, str]:
    return {c["name"]: c.get("image", "") for c in task_definition.get("containerDefinitions", [])}


def revision_of(arn: str) -> int | None:
    """The revision number at the end of a task definition ARN (``family:12`` -> 12)."""
    tail = arn.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


def short_name(arn: str | None) -> str:
    """``arn:...:task-definition/payments:12`` -> ``payments:12``."""
    if not arn:
        return "-"
    return arn.rsplit("/", 1)[-1]
