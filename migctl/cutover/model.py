"""The shape of a runbook step: a gate, an action, a check, and what undoes it.

Every function of a step has the same signature, ``(ctx, memo) -> facts``:
``memo.before`` is what ``prepare`` recorded before the first attempt (the
state to go back to), ``memo.details`` what the step has found or done so
far, ``memo.progress`` what earlier attempts noted on their way (a note whose
details carry ``progress``, and ``interrupted_at`` when Ctrl-C stopped one).
Facts are plain JSON values: they go to the journal as they are.

A step must be idempotent: after a crash the runbook runs it again from its
gate, and after a failure its undo may run on a half-done action.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from migctl.errors import CheckFailed

if TYPE_CHECKING:
    from migctl.cutover.context import CutoverContext

Facts = Mapping[str, Any]


@dataclass(frozen=True)
class StepMemo:
    before: Facts = field(default_factory=dict)
    details: Facts = field(default_factory=dict)
    progress: Facts = field(default_factory=dict)


StepFn = Callable[["CutoverContext", StepMemo], Facts]
ManualFn = Callable[["CutoverContext", StepMemo], str]


def nothing(_ctx: CutoverContext, _memo: StepMemo) -> Facts:
    """A gate, check or prepare with nothing to do."""
    return {}


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    gate_text: str  # the precondition, as ``cutover plan`` shows it
    action_text: str
    check_text: str
    undo_text: str | None  # None: nothing to undo
    action: StepFn
    gate: StepFn = nothing
    check: StepFn = nothing
    prepare: StepFn = nothing  # records the state to go back to, before the first attempt
    undo: StepFn | None = None
    manual_undo: ManualFn | None = None  # what a person does when the undo fails
    release: StepFn | None = None  # once the cutover completed: free what the step holds
    point_of_no_return: bool = False  # ask before it unless --yes
    undo_failure_halts: bool = False  # when its undo fails, undo nothing before it


class StepFailed(CheckFailed):
    """A step's gate or check was not met; ``details`` go to the journal with the failure."""

    def __init__(
        self, message: str, *, details: Facts | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.details: Facts = dict(details or {})
