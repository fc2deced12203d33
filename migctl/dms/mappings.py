"""A DMS task's table mappings: which source tables its selection rules replicate.

DMS reads the ``selection`` rules of the task's ``TableMappings`` JSON: a table
is replicated when an ``include`` (or ``explicit``) rule's object-locator
matches it and no ``exclude`` rule does. Object-locator names take ``%`` as a
wildcard for any run of characters. Transformation and table-settings rules
do not change which tables are selected, so they are ignored here.

Used by ``dms lint`` (tables left out, the cutover marker, partitioned tables)
and by the cutover's preflight (is the marker replicated?).
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from typing import Any

INCLUDE_ACTIONS = frozenset({"include", "explicit"})


def like(pattern: str, value: str) -> bool:
    """DMS object-locator wildcards: ``%`` matches any run of characters; nothing else is special."""
    glob = pattern.replace("[", "[[]").replace("*", "[*]").replace("?", "[?]").replace("%", "*")
    return fnmatch.fnmatchcase(value, glob)


@dataclass(frozen=True)
class SelectionRule:
    schema: str  # object-locator schema-name, with % wildcards
    table: str  # object-locator table-name, with % wildcards
    action: str  # include, explicit or exclude (lower case)

    def matches(self, schema: str, table: str) -> bool:
        return like(self.schema, schema) and like(self.table, table)


@dataclass(frozen=True)
class TableSelection:
    """The selection rules of one task's table mappings."""

    rules: tuple[SelectionRule, ...]

    def selects(self, schema: str, table: str) -> bool:
        """Included by some include/explicit rule and excluded by none: what DMS replicates."""
        hits = {r.action for r in self.rules if r.matches(schema, table)}
        return bool(hits & INCLUDE_ACTIONS) and "exclude" not in hits

    def describe(self) -> str:
        """The rules in one line, for evidence: ``include public.%, exclude public.tmp_%``."""
        return ", ".join(f"{r.action} {r.schema}.{r.table}" for r in self.rules) or "no rule"


def parse_selection(table_mappings: str | None) -> TableSelection | None:
    """The selection rules of a ``TableMappings`` JSON document; None when absent or unreadable.

    A missing schema-name matches nothing (DMS requires one); a missing
    table-name matches every table, as ``%`` does.
    """
    if not table_mappings:
        return None
    try:
        document = json.loads(table_mappings)
        raw_rules: list[Any] = document.get("rules", [])
    except (ValueError, AttributeError):
        return None
    if not isinstance(raw_rules, list):
        return None
    rules = []
    for raw in raw_rules:
        if not isinstance(raw, dict) or raw.get("rule-type") != "selection":
            continue
        locator = raw.get("object-locator") or {}
        if not isinstance(locator, dict):
            continue
        rules.append(
            SelectionRule(
                schema=str(locator.get("schema-name", "")),
                table=str(locator.get("table-name", "%")),
                action=str(raw.get("rule-action", "")).lower(),
            )
        )
    return TableSelection(tuple(rules))
