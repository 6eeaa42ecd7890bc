"""A/B of the clinic pull: two source trees of `referral-clinic`, alternated on one stack, each pull taking the
very same envelopes.

    git worktree add /tmp/base HEAD                   # the "before"
    python -m bench.ab_pull --a /tmp/base/src --b src --rounds 5

The pull's rate on this machine moves by half from one run to the next with nothing changed (the cores are
shared with other work), so a change is judged only against runs of the other tree taken between its own.
One clinic's inbox is filled once (`scenarios.seed_waiting`); before each pull the same deliveries are made
available again with their envelopes, the table vacuumed, and the clinic's folder (its ledger) put back as
it was, so every pull does the same work against the same table. The files each pull made are left in
place until the end: right after 10,000 files were deleted, making a file here took 300–1,000 µs instead
of 24–38 µs (most likely ext4 passing over inodes freed a moment ago), which slowed whichever pull came
next. The tree is
chosen with PYTHONPATH, which comes before the editable install: the api and worker stay as they are.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
from pathlib import Path

import asyncpg

from bench import scenarios
from bench.bodies import bodies
from bench.stack import CLINICS, ENROLLED, Stack, bench_stack
from referral_protocol.enrolment import InboxItem

SLUG = "bench-a"


async def _make_available_again(url: str, items: list[InboxItem]) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """UPDATE deliveries d SET status = 'available', envelope = v.envelope, acknowledged_at = NULL
               FROM unnest($1::uuid[], $2::bytea[]) AS v(id, envelope) WHERE d.id = v.id""",
            [item.delivery_id for item in items],
            [item.envelope for item in items],
        )
        await conn.execute("VACUUM (ANALYZE) deliveries")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def _pull(stack: Stack, src: str, out: Path, n: int) -> dict[str, float]:
    acknowledged, elapsed, usage = scenarios.timed_pull(stack, SLUG, out, stack.env_with(PYTHONPATH=src), expected=n)
    return {
        "per_s": acknowledged / elapsed,
        "tool_us": usage.per(acknowledged).get("clinic tool", 0.0),
        "cores": sum(usage.seconds.values()) / usage.wall,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ab_pull", description=__doc__.split("\n")[0])
    p.add_argument("--a", required=True, help="the first tree's src folder")
    p.add_argument("--b", required=True, help="the second tree's src folder")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("-n", type=int, default=10_000, help="referrals waiting")
    args = p.parse_args(argv)
    trees = {"A": str(Path(args.a).resolve()), "B": str(Path(args.b).resolve())}
    with tempfile.TemporaryDirectory(prefix="rb-ab-pull-") as folder:
        work = Path(folder)
        stack = bench_stack(work)
        try:
            stack.up(clinics=ENROLLED)
            stack.serve(workers=2)
            stack.worker()
            asyncio.run(scenarios.seed_waiting(stack, SLUG, bodies(list(CLINICS)), args.n))
            scenarios.settle(stack)
            items = asyncio.run(scenarios.waiting_items(stack.database_url, SLUG))
            clinic, kept = stack.clinic_dir(SLUG), work / "clinic-as-seeded"
            shutil.copytree(clinic, kept)
            rates: dict[str, list[float]] = {name: [] for name in trees}
            for round_ in range(args.rounds):
                for name, src in trees.items():
                    asyncio.run(_make_available_again(stack.database_url, items))
                    shutil.rmtree(clinic)
                    shutil.copytree(kept, clinic)
                    out = work / f"out-{name}-{round_}"
                    result = _pull(stack, src, out, len(items))  # its files stay until the end (see above)
                    rates[name].append(result["per_s"])
                    print(
                        f"{name} round {round_}: {result['per_s']:.0f}/s, clinic tool {result['tool_us']:.0f} µs a "
                        f"referral, {result['cores']:.2f} cores busy, load {scenarios.loadavg()}",
                        flush=True,
                    )
            for name, values in rates.items():
                print(f"{name} ({trees[name]}): " + ", ".join(f"{v:.0f}" for v in values) + " referrals/s")
        finally:
            stack.down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
