"""When a target sequence is behind: last_value, is_called and the owning column's max."""

from __future__ import annotations

from migctl.validate.sequences import SequenceState, sequence_status


def state(last: int, called: bool = True, inc: int = 1) -> SequenceState:
    return SequenceState(last, called, inc)


def test_never_called_sequence_has_handed_out_nothing() -> None:
    assert state(1, called=False).used == 0
    assert state(5001, called=False).used == 5000  # setval(seq, 5001, false)


def test_status() -> None:
    assert sequence_status(state(5000), None, 5000) == "missing_in_target"
    assert sequence_status(state(5000), state(1, called=False), 5000) == "behind"
    assert sequence_status(state(5000), state(5000), 5000) == "match"
    assert sequence_status(state(5000), state(5001, called=False), 4000) == "match"
    assert sequence_status(state(5000), state(6000), 5000) == "ahead"
    # rows inserted with explicit ids above the sequence: the column decides
    assert sequence_status(state(5000), state(5000), 7000) == "behind"
    assert sequence_status(state(1, called=False), state(1, called=False), None) == "match"


def test_descending_sequences_compare_the_other_way() -> None:
    assert sequence_status(state(-50, inc=-1), state(-10, inc=-1), -50) == "behind"
    assert sequence_status(state(-50, inc=-1), state(-60, inc=-1), -50) == "ahead"
