"""What one pull did: counted as it goes, told to the terminal in plain words, and as JSON for scripts.

The lines a person reads name a referral only by its reference and when it arrived: a front-desk screen
is often seen by others, so never a name, a need, or anything else from inside the referral.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from referral_clinic.broker_client import BrokerRefusedClinic, BrokerUnavailable

#: What arrived, as a person calls it; a notice is named by its kind.
KIND_SHOWN = {"referral": "new referral", "correction": "correction", "withdrawal": "withdrawal", "erasure": "erasure"}


@dataclass(frozen=True)
class Received:
    """A referral or a notice about one, now on disk: its reference, its kind, when this computer got it."""

    reference: str
    kind: str  # "referral", or the notice's kind
    at: datetime

    def line(self) -> str:
        """`2026-12-07 04:47  RB-ABCDE-FGHIJ  new referral`, in this computer's time zone."""
        return f"{self.at.astimezone():%Y-%m-%d %H:%M}  {self.reference}  {KIND_SHOWN.get(self.kind, self.kind)}"


@dataclass
class PullReport:
    pulled: int = 0
    written: int = 0
    notices: int = 0
    acknowledged: int = 0
    already_had: int = 0
    refused: dict[str, str] = field(default_factory=dict)  # delivery id -> reason
    reported: list[str] = field(default_factory=list)  # refusals the broker took out of the inbox
    local_failures: dict[str, str] = field(default_factory=dict)  # this machine's: disk full, permissions
    not_acknowledged: dict[str, str] = field(default_factory=dict)
    broker_error: BrokerUnavailable | BrokerRefusedClinic | None = None
    stopped: bool = False  # asked to stop (a signal) before the inbox was empty
    received: list[Received] = field(default_factory=list)  # filed in this run, in that order
    # referrals written, or given a notice, in this run, in that order (a dict: each once, found at once)
    references: dict[str, None] = field(default_factory=dict)
    key_changes: list[str] = field(default_factory=list)  # the broker's signing key changed: what was pinned
    unknown_broker_keys: set[str] = field(default_factory=set)  # key ids of signers this clinic does not pin

    @property
    def complete(self) -> bool:
        return not (self.refused or self.local_failures or self.not_acknowledged or self.broker_error)

    def arrived(self, received: Received) -> None:
        self.received.append(received)
        self.references.setdefault(received.reference)
        if received.kind == "referral":
            self.written += 1
        else:
            self.notices += 1

    def plain_summary(self) -> str:
        """`3 new referrals, 1 correction, 0 withdrawals, 0 erasures`."""
        counts = {kind: 0 for kind in KIND_SHOWN}
        for item in self.received:
            counts[item.kind] = counts.get(item.kind, 0) + 1
        return ", ".join(_counted(n, KIND_SHOWN.get(kind, kind)) for kind, n in counts.items())

    def summary(self) -> str:
        """The bookkeeping behind it, for whoever looks after the tool."""
        return (
            f"pulled {self.pulled}, written {self.written}, acknowledged {self.acknowledged}, "
            f"already had {self.already_had}, refused {len(self.refused)}"
            + (f", notices {self.notices}" if self.notices else "")
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "pulled": self.pulled,
            "written": self.written,
            "notices": self.notices,
            "acknowledged": self.acknowledged,
            "already_had": self.already_had,
            "refused": self.refused,
            "reported_to_broker": self.reported,
            "local_failures": self.local_failures,
            "not_acknowledged": self.not_acknowledged,
            "broker_error": None if self.broker_error is None else str(self.broker_error),
            "stopped": self.stopped,
            "complete": self.complete,
            "references": list(self.references),
            "key_changes": self.key_changes,
            "unknown_broker_keys": sorted(self.unknown_broker_keys),
            "received": [
                {"reference": r.reference, "kind": r.kind, "received_at": r.at.isoformat()} for r in self.received
            ],
        }


def _counted(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"
