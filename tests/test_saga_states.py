"""The saga's step names, written in three places, are the same names."""

from __future__ import annotations

import re
from pathlib import Path

from services.chassis.wire import WireAnswer
from services.orders import saga
from services.orders.saga import Outcome, Step

MIGRATIONS = Path(saga.__file__).resolve().parent / "migrations"


def _checked_steps() -> set[str]:
    found: set[str] = set()
    for path in sorted(MIGRATIONS.glob("*.sql")):
        for clause in re.findall(r"CHECK \(step IN \(([^)]*)\)", path.read_text()):
            found |= set(re.findall(r"'([a-z_]+)'", clause))
    return found


def _drawn_steps() -> set[str]:
    machine = (saga.__doc__ or "").split("::", 1)[1].split("\n\n", 2)[1]
    return set(re.findall(r"[a-z]+(?:_[a-z]+)*", machine))


def test_the_database_checks_exactly_the_steps_the_saga_knows() -> None:
    assert _checked_steps() == {step.value for step in Step}


def test_the_machine_at_the_top_of_saga_py_draws_every_step() -> None:
    assert {step.value for step in Step} <= _drawn_steps()


def test_classify_names_each_kind_of_answer() -> None:
    assert saga.classify(WireAnswer(201, {}, b"")) is Outcome.OK
    assert saga.classify(WireAnswer(409, {}, b"")) is Outcome.REFUSED
    assert saga.classify(WireAnswer(503, {}, b"")) is Outcome.UNKNOWN
    assert saga.classify(None) is Outcome.UNKNOWN
    assert saga.classify(saga.NotSent()) is Outcome.NOT_SENT
