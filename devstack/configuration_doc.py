"""The configuration table of docs/operations.md, written from the settings struct.

`python -m devstack.configuration_doc` rewrites the table between the two markers;
tests/test_configuration_doc.py fails while the file differs from what this would write.
"""

from __future__ import annotations

import sys
from pathlib import Path

from referral_broker.services.environment import markdown_table
from referral_broker.services.settings import Settings

OPERATIONS_DOC = Path(__file__).resolve().parents[1] / "docs" / "operations.md"
COMMAND = ".venv/bin/python -m devstack.configuration_doc"
BEGIN = f"<!-- configuration table: written from services/settings.py by `{COMMAND}`; edit the struct, not this -->"
END = "<!-- end of the configuration table -->"


def with_current_table(text: str) -> str:
    """The document with the table between the markers as the settings struct has it now."""
    before, begin, rest = text.partition(BEGIN)
    _, end, after = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"the configuration table's markers are missing: {BEGIN!r} … {END!r}")
    return f"{before}{BEGIN}\n\n{markdown_table(Settings)}\n{END}{after}"


def main() -> int:
    text = OPERATIONS_DOC.read_text()
    current = with_current_table(text)
    if current == text:
        print(f"{OPERATIONS_DOC}: the configuration table is up to date")
        return 0
    OPERATIONS_DOC.write_text(current)
    print(f"{OPERATIONS_DOC}: the configuration table was rewritten from services/settings.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
