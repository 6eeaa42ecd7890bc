"""The state tables in docs/architecture.md say exactly what the domain's state machines allow.

The domain modules are the one definition; the reference repeats them for readers, so a move added
or removed in code must show in the document too.
"""

from __future__ import annotations

import re
from pathlib import Path

from referral_broker.domain.delivery import TRANSITIONS, DeliveryStatus
from referral_broker.domain.keys import KEY_TRANSITIONS, KeyState

ARCHITECTURE = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


def state_table(text: str, first_header: str) -> dict[str, set[str]]:
    """{state: the states its row says it may move to} from the table whose first column header begins
    with `first_header`; the first and last columns are read, backticked names only."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header}"))
    table: dict[str, set[str]] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        state = cells[0].strip("`")
        table[state] = set(re.findall(r"`([a-z_]+)`", cells[-1]))
    return table


def _expected(
    transitions: dict[DeliveryStatus, frozenset[DeliveryStatus]] | dict[KeyState, frozenset[KeyState]],
) -> dict[str, set[str]]:
    return {source.value: {target.value for target in targets} for source, targets in transitions.items()}


def test_the_delivery_table_is_the_delivery_state_machine() -> None:
    documented = state_table(ARCHITECTURE.read_text(encoding="utf-8"), "delivery state")
    assert documented == _expected(TRANSITIONS), (
        "docs/architecture.md's delivery table differs from domain/delivery.py's TRANSITIONS"
    )


def test_the_key_table_is_the_key_state_machine() -> None:
    documented = state_table(ARCHITECTURE.read_text(encoding="utf-8"), "key state")
    assert documented == _expected(KEY_TRANSITIONS), "docs/architecture.md's key table differs from domain/keys.py"


def test_a_move_missing_from_a_table_would_be_found() -> None:
    text = "| key state | means | may move to |\n|---|---|---|\n| `pending` | x | `active` |\n| `revoked` | y | — |\n"
    assert state_table(text, "key state") == {"pending": {"active"}, "revoked": set()}
    assert state_table(text, "key state") != _expected(KEY_TRANSITIONS)
