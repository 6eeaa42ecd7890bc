"""Write the protocol's JSON Schemas into the referral-protocol package: `python -m devstack.protocol_schemas`.

They are generated from the msgspec types (`referral_protocol.schemas.generate`); tests/protocol/test_schemas.py
fails when a shipped file differs from what generation gives, and says to run this.
"""

from __future__ import annotations

import sys
from pathlib import Path

from referral_protocol import schemas

TARGET = Path(__file__).resolve().parent.parent / "protocol" / "src" / "referral_protocol" / "schemas"


def main() -> int:
    made = schemas.generate()
    TARGET.mkdir(exist_ok=True)
    for old in TARGET.glob("*.schema.json"):
        if old.name.removesuffix(".schema.json") not in made:
            old.unlink()
    for name, schema in made.items():
        (TARGET / f"{name}.schema.json").write_bytes(schemas.encode(schema))
    print(f"{len(made)} schemas in {TARGET}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
