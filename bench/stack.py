"""The product as the bench runs it: the one launcher (`devstack.stack.Stack`) with the bench's options.

Private PostgreSQL (configured as a production database of this size would be) and Redis, broker keys,
two enrolled clinics; the api and the worker are started by the bench as it needs them.
"""

from __future__ import annotations

import os
from pathlib import Path

from devstack.programs import BIN
from devstack.stack import Clinic, Stack

__all__ = ["BIN", "CLINICS", "ENROLLED", "PASSPHRASE", "Stack", "bench_stack"]

PASSPHRASE = "bench passphrase, not for real clinics"  # noqa: S105 - a throwaway clinic folder
CLINICS = ("bench-a", "bench-b")
# Submit-to-inbox is measured to the commit of the dispatch: PostgreSQL records commit times.
# PostgreSQL's own defaults (128 MB of shared buffers, 1 GB of WAL between checkpoints) suit no
# server with 24 GB; these are what a production database of this size would be given.
PG_SETTINGS = {
    "track_commit_timestamp": "on",
    "shared_buffers": os.environ.get("BENCH_PG_SHARED_BUFFERS", "4GB"),
    "max_wal_size": "8GB",
    "effective_cache_size": "12GB",
}


#: What `stack.up(clinics=ENROLLED)` enrols: the clinics as an operator would enrol them.
ENROLLED = tuple(Clinic(slug, f"Klinikk {slug}") for slug in CLINICS)


def bench_stack(folder: Path, *, durable: bool = True) -> Stack:
    """The stack with the bench's options; `up(clinics=ENROLLED)` starts its servers."""
    return Stack(
        folder,
        database_name="rb_bench",
        durable=durable,
        postgres_settings=PG_SETTINGS,
        passphrase=PASSPHRASE,
        # One client address sends every request of the load test; the per-client limit would refuse
        # all but the first few a minute. Turned off for the bench, and said so in the report.
        extra_env={"REFERRAL_BROKER_SUBMIT_RATE": "0", "REFERRAL_BROKER_SUBMIT_REFUSED_RATE": "0"},
    )
