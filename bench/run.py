"""`make bench`: start the product privately, measure everything, write the table into docs/performance.md.

    python -m bench.run                      # the full run (about 30 minutes with the 10-minute soak)
    BENCH_QUICK=1 python -m bench.run        # a short run, to try the harness (a few minutes)
    python -m bench.run --soak 120 --repeats 3 --api-workers 2

Nothing here touches the machine's shared PostgreSQL or Redis: it starts its own, in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import memory, scenarios, sweep, watch_latency
from bench.bodies import bodies
from bench.stack import CLINICS, ENROLLED, Stack, bench_stack

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"
MB = 1024 * 1024


@dataclass(frozen=True)
class Plan:
    repeats: int
    rates: tuple[float, ...]
    seconds: float
    saturation_connections: int
    inbox_rate: float
    pull_n: int
    sweep_rows: tuple[int, ...]
    soak_seconds: float
    soak_rate: float
    api_workers: int
    durable: bool
    watch_rates: tuple[float, ...] = (1, 20)
    idle_seconds: float = 60

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Plan:
        quick = args.quick
        return cls(
            repeats=args.repeats or (1 if quick else 3),
            rates=(50, 200, 500),
            seconds=args.seconds or (3 if quick else 15),
            saturation_connections=32,
            inbox_rate=200,
            pull_n=args.pull or (500 if quick else 10_000),
            sweep_rows=tuple(args.sweep) if args.sweep else ((20_000, 80_000) if quick else (1_000_000, 4_000_000)),
            soak_seconds=args.soak if args.soak is not None else (10 if quick else 600),
            soak_rate=args.soak_rate,
            api_workers=args.api_workers,
            durable=not args.no_fsync,
            idle_seconds=30 if quick else 60,
        )


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", default=env("BENCH_QUICK", "") not in ("", "0"))
    p.add_argument("--repeats", type=int, default=int(env("BENCH_REPEATS", "0")) or None)
    p.add_argument("--seconds", type=float, default=float(env("BENCH_SECONDS", "0")) or None, help="per load run")
    p.add_argument(
        "--soak", type=float, default=float(env["BENCH_SOAK_SECONDS"]) if env("BENCH_SOAK_SECONDS") else None
    )
    p.add_argument("--soak-rate", type=float, default=float(env("BENCH_SOAK_RATE", "100")))
    p.add_argument("--pull", type=int, default=int(env("BENCH_PULL", "0")) or None, help="referrals waiting")
    p.add_argument("--sweep", type=int, nargs="*", default=None, help="table sizes for the sweep, e.g. 1000000 4000000")
    p.add_argument("--api-workers", type=int, default=int(env("BENCH_API_WORKERS", "2")))
    p.add_argument("--no-fsync", action="store_true", help="PostgreSQL without fsync (not what production runs)")
    p.add_argument(
        "--skip", nargs="*", default=env("BENCH_SKIP", "").split(), help="intake inbox watch soak pull sweep"
    )
    p.add_argument("--out", type=Path, default=Path(env("BENCH_OUT", str(ROOT / "docs" / "performance.md"))))
    p.add_argument("--json", type=Path, default=None, help="also write every raw figure here")
    p.add_argument("--workdir", type=Path, default=None, help="keep servers' data and logs here (else removed)")
    return p


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


def measure(plan: Plan, skip: set[str], workdir: Path) -> dict:
    results: dict = {"plan": plan.__dict__, "started": datetime.now(UTC).isoformat(timespec="seconds")}
    stack = bench_stack(workdir, durable=plan.durable)
    body_list = bodies(list(CLINICS))
    bodies_file = workdir / "bodies.jsonl"
    try:
        say("starting private PostgreSQL and Redis, keys, two clinics")
        stack.up(clinics=ENROLLED)
        bodies_file.write_bytes(b"\n".join(body_list) + b"\n")
        api = stack.serve(workers=plan.api_workers)
        worker = stack.worker()
        say(f"api (pid {api.pid}, {plan.api_workers} process(es)) and worker (pid {worker.pid}) on {stack.url}")
        scenarios.open_loop(stack, bodies_file, 50, 2)  # warm up: connections, prepared statements, caches
        pids = {"api": api.pid, "worker": worker.pid}
        with memory.Sampler(pids, every=0.5) as sampler:
            if "intake" not in skip:
                _intake(plan, stack, bodies_file, worker.pid, results)
            if "inbox" not in skip:
                results["inbox"] = [
                    _log(
                        f"submit to inbox at {plan.inbox_rate:g}/s",
                        scenarios.submit_to_inbox(stack, bodies_file, plan.inbox_rate, plan.seconds),
                    )
                    for _ in range(plan.repeats)
                ]
        if "watch" not in skip:
            _watch(plan, stack, bodies_file, workdir, results)
        results["memory"] = {
            "api_peak_mb": sampler.peak("api") / MB,
            "worker_peak_mb": sampler.peak("worker") / MB,
            "api_hwm_mb": memory.peak(api.pid) / MB,
            "worker_hwm_mb": memory.peak(worker.pid) / MB,
        }
        if "soak" not in skip and plan.soak_seconds > 0:
            results["soak"] = _soak(plan, stack, bodies_file, pids)
        if "pull" not in skip:
            results["pull"] = [
                _log(f"pull of {plan.pull_n}", scenarios.pull(stack, body_list, plan.pull_n, workdir / f"inbox-{i}"))
                for i in range(plan.repeats)
            ]
        stack.stop_programs()
        if "sweep" not in skip:
            results["sweep"] = [
                _log(
                    f"sweep over {rows:,} referrals",
                    sweep.measure(stack, rows, max(2, plan.repeats), scenarios.loadavg),
                )
                for rows in plan.sweep_rows
            ]
    finally:
        stack.down()
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    return results


def _log(what: str, result: dict) -> dict:
    shown = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in result.items() if k != "runs"}
    say(f"{what}: {shown}")
    return result


def _intake(plan: Plan, stack: Stack, bodies_file: Path, worker_pid: int, results: dict) -> None:
    fixed: dict[str, list[dict]] = {str(int(r)): [] for r in plan.rates}
    saturated: list[dict] = []
    alone: list[dict] = []
    ceilings: list[dict] = []
    for _ in range(plan.repeats):  # interleaved, so a burst of other work on the machine spreads over all
        for rate in plan.rates:
            r = scenarios.open_loop(stack, bodies_file, rate, plan.seconds)
            r.pop("accepted_at", None)
            fixed[str(int(rate))].append(_log(f"intake at {rate:g}/s offered", r))
        c = plan.saturation_connections
        saturated.append(_log("intake at saturation", scenarios.saturation(stack, bodies_file, plan.seconds, c)))
        alone.append(
            _log(
                "intake at saturation, worker paused",
                scenarios.saturation(stack, bodies_file, plan.seconds, c, pause=worker_pid),
            )
        )
        ceilings.append(
            _log(
                "intake ceiling",
                scenarios.intake_ceiling(stack, bodies_file, plan.seconds, plan.api_workers, pause=worker_pid),
            )
        )
    results["intake"] = {"fixed": fixed, "saturation": saturated, "saturation_alone": alone, "ceiling": ceilings}


def _watch(plan: Plan, stack: Stack, bodies_file: Path, workdir: Path, results: dict) -> None:
    """Submit → decrypted file on the clinic's disk with `referral-clinic watch` (default: long poll) running."""
    to_disk: dict[str, list[dict]] = {f"{r:g}": [] for r in plan.watch_rates}
    for _ in range(plan.repeats):
        for rate in plan.watch_rates:
            seconds = max(plan.seconds, 30.0) if rate < 5 else plan.seconds  # enough referrals for a p99
            to_disk[f"{rate:g}"].append(
                _log(
                    f"submit to the clinic's disk at {rate:g}/s, watch running",
                    watch_latency.to_disk(stack, bodies_file, rate, seconds, workdir),
                )
            )
    idle = _log(
        "idle watching clinic",
        watch_latency.idle_requests_per_minute(stack, plan.idle_seconds, workdir),
    )
    results["watch"] = {"to_disk": to_disk, "idle": idle}


def _soak(plan: Plan, stack: Stack, bodies_file: Path, pids: dict[str, int]) -> dict:
    say(f"soak: {plan.soak_rate:g}/s for {plan.soak_seconds:g} s")
    with memory.Sampler(pids, every=5.0) as sampler:
        load = scenarios.loadavg()
        run = scenarios.open_loop(stack, bodies_file, plan.soak_rate, plan.soak_seconds)
    run.pop("accepted_at", None)
    out: dict = {"loadavg": load, "accepted": run["accepted"], "p99_ms": run["p99_ms"]}
    for name, samples in sampler.samples.items():
        tenth = max(1, len(samples) // 10)
        out[name] = {
            "first_mb": statistics.median(samples[:tenth]) / MB,
            "last_mb": statistics.median(samples[-tenth:]) / MB,
            "peak_mb": max(samples) / MB,
        }
    return _log("soak", out)


# ------------------------------------------------------------------------------------------ report


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _runs(values: list[float], fmt: str = "{:.0f}") -> str:
    return ", ".join(fmt.format(v) for v in values)


def _loads(rows: list[dict]) -> str:
    return "; ".join(r["loadavg"] for r in rows)


def figures(results: dict) -> tuple[list[tuple[str, str, str, str]], list[tuple[str, str, str, str]]]:
    """(rows of the figures table, rows of the targets table)."""
    rows: list[tuple[str, str, str, str]] = []
    targets: list[tuple[str, str, str, str]] = []

    def row(name: str, values: list[float], unit: str, loads: str, fmt: str = "{:.0f}") -> float:
        m = median(values)
        rows.append((name, f"{fmt.format(m)} {unit}", _runs(values, fmt), loads))
        return m

    def target(what: str, goal: str, measured: str, ok: bool) -> None:
        targets.append((what, goal, measured, "met" if ok else "**not met**"))

    intake = results.get("intake")
    if intake:
        for rate, runs in intake["fixed"].items():
            row(f"Intake at {rate}/s offered: accepted", [r["accepted_per_s"] for r in runs], "/s", _loads(runs))
            row(f"Intake at {rate}/s offered: p50", [r["p50_ms"] for r in runs], "ms", "″", "{:.1f}")
            p99 = row(f"Intake at {rate}/s offered: p99", [r["p99_ms"] for r in runs], "ms", "″", "{:.1f}")
            if rate == "200":
                target("Intake p99 at 200/s offered", "< 50 ms", f"{p99:.1f} ms", p99 < 50)
        sat = intake["saturation"]
        c = sat[0]["connections"]
        row(
            f"Intake at saturation (wrk, {c} connections), worker running: accepted",
            [r["accepted_per_s"] for r in sat],
            "/s",
            _loads(sat),
        )
        row("… p50", [r["p50_ms"] for r in sat], "ms", "″", "{:.1f}")
        row("… p99", [r["p99_ms"] for r in sat], "ms", "″", "{:.1f}")
        sat = intake["saturation_alone"]
        accepted = row(
            f"Intake at saturation (wrk, {c} connections), worker paused: accepted",
            [r["accepted_per_s"] for r in sat],
            "/s",
            _loads(sat),
        )
        row("… p50", [r["p50_ms"] for r in sat], "ms", "″", "{:.1f}")
        row("… p99", [r["p99_ms"] for r in sat], "ms", "″", "{:.1f}")
        row(
            "Worker alone, working off the backlog that left: made available",
            [r["dispatch_drain_per_s"] for r in sat],
            "/s",
            "″",
        )
        ceil = intake["ceiling"]
        ceiling = row(
            f"Intake ceiling (seal ×2 + sign, AEAD, one commit; {ceil[0]['processes']} process(es))",
            [r["referrals_per_s"] for r in ceil],
            "/s",
            _loads(ceil),
        )
        row("… one referral alone, one after another", [r["alone_per_s"] for r in ceil], "/s", "″")
        row("… of which crypto", [r["crypto_ms"] for r in ceil], "ms", "″", "{:.2f}")
        row("… of which the committed transaction (fsync)", [r["transaction_ms"] for r in ceil], "ms", "″", "{:.2f}")
        fraction = accepted / ceiling * 100
        rows.append(("Intake at saturation (worker paused) / ceiling", f"{fraction:.0f} %", "", ""))
        target(
            "Intake at saturation vs its ceiling",
            "≥ 60 %",
            f"{fraction:.0f} % ({accepted:.0f} of {ceiling:.0f}/s)",
            fraction >= 60,
        )
    inbox = results.get("inbox")
    if inbox:
        rate = inbox[0]["rate"]
        row(f"Submit to inbox at {rate:g}/s: p50", [r["p50_ms"] for r in inbox], "ms", _loads(inbox), "{:.0f}")
        p99 = row(f"Submit to inbox at {rate:g}/s: p99", [r["p99_ms"] for r in inbox], "ms", "″", "{:.0f}")
        target("Submit to inbox p99 at 200/s", "< 1 s", f"{p99:.0f} ms", p99 < 1000)
    watched = results.get("watch")
    if watched:
        for rate, runs in watched["to_disk"].items():
            name = f"Submit to decrypted file on the clinic's disk at {rate}/s offered, `watch` running"
            row(f"{name}: p50", [r["p50_ms"] for r in runs], "ms", _loads(runs), "{:.0f}")
            p99 = row(f"{name}: p99", [r["p99_ms"] for r in runs], "ms", "″", "{:.0f}")
            if all("dispatch_p99_ms" in r for r in runs):
                row("… of which 201 → dispatch began: p50", [r["dispatch_p50_ms"] for r in runs], "ms", "″", "{:.0f}")
                row("… of which 201 → dispatch began: p99", [r["dispatch_p99_ms"] for r in runs], "ms", "″", "{:.0f}")
            missing = sum(r["missing"] for r in runs)
            target(
                f"Submit to clinic's disk p99 at {rate}/s (watch)",
                "< 1 s, none missing",
                f"{p99:.0f} ms, {missing} missing",
                p99 < 1000 and missing == 0,
            )
        idle = watched["idle"]
        rows.append(
            (
                f"Requests an idle watching clinic makes (over {idle['seconds']:g} s)",
                f"{idle['per_minute']:.1f} /min",
                f"{idle['requests']} requests",
                idle["loadavg"],
            )
        )
        target("Idle watching clinic", "≤ 3 requests/min", f"{idle['per_minute']:.1f} /min", idle["per_minute"] <= 3)
    pull = results.get("pull")
    if pull:
        n = pull[0]["waiting"]
        got = row(
            f"Clinic pull of {n:,} waiting (verify, decrypt, durable write, ack)",
            [r["referrals_per_s"] for r in pull],
            "/s",
            _loads(pull),
        )
        ceil = row("Pull ceiling (verify + decrypt alone)", [r["ceiling_per_s"] for r in pull], "/s", "″")
        if all("file_us" in r for r in pull):
            row(
                "… beside it: making one such file here, as the tool does (no fsync)",
                [r["file_us"] for r in pull],
                "µs",
                "″",
            )
        if all("cpu_us" in r for r in pull):
            # Where the cores went: the clinic tool, the broker that serves it, and the kernel's workers
            # writing dirty pages back (the tool's files, and PostgreSQL's pages, on the one file system).
            by_group = {g: [r["cpu_us"].get(g, 0.0) for r in pull] for r0 in pull for g in r0["cpu_us"]}
            for group, values in sorted(by_group.items(), key=lambda gv: (-median(gv[1]), gv[0])):
                if max(values) >= 1:  # under a microsecond a referral in every run: left out
                    row(f"… CPU per referral during the pull: {group}", values, "µs", "″")
            row("… cores busy during the pull", [r["cores_busy"] for r in pull], "cores", "″", "{:.2f}")
        fraction = got / ceil * 100
        rows.append(("Pull / ceiling", f"{fraction:.0f} %", "", ""))
        target("Clinic pull vs its ceiling", "≥ 50 %", f"{fraction:.1f} % ({got:.0f} of {ceil:.0f}/s)", fraction >= 50)
    sweeps = results.get("sweep")
    if sweeps:
        per_row: dict[int, float] = {}
        for s in sweeps:
            runs = s["runs"]
            each = runs[0]["anonymised"]
            rate = row(
                f"Anonymisation sweep, {s['rows']:,} referrals over 12 months (~{each:,} due a run)",
                [r["rows_per_s"] for r in runs],
                "rows/s",
                _loads(runs),
            )
            per_row[s["rows"]] = row("… per anonymised row", [r["us_per_row"] for r in runs], "µs", "″", "{:.1f}")
            if all("touched_per_s" in r for r in runs):
                row(
                    "… rows rewritten or deleted (referral, its deliveries, their receipts)",
                    [r["touched_per_s"] for r in runs],
                    "rows/s",
                    "″",
                )
            if "scrape_ms" in s:
                rows.append(("… /metrics scrape's database reads on this table", f"{s['scrape_ms']:.1f} ms", "", ""))
            if "recount_ms" in s:
                rows.append(
                    ("… the same read by counting the tables (before 0010)", f"{s['recount_ms']:.0f} ms", "", "")
                )
            target(f"Sweep rate, {s['rows']:,} referrals", "≥ 50,000 rows/s", f"{rate:,.0f} rows/s", rate >= 50_000)
        if len(per_row) >= 2:
            small, large = min(per_row), max(per_row)
            ratio = per_row[large] / per_row[small]
            rows.append((f"Cost per row, {large:,} vs {small:,}", f"{ratio:.2f} ×", "", ""))
            # Within 10 %: the runs are short and the machine is shared.
            target(
                f"Sweep cost per row, {large:,} vs {small:,}", "no slower (≤ 1.10 ×)", f"{ratio:.2f} ×", ratio <= 1.10
            )
    mem = results.get("memory")
    if mem:
        rows.append(("Peak RSS during intake: api (largest process)", f"{mem['api_peak_mb']:.0f} MB", "", ""))
        rows.append(("Peak RSS during intake: worker", f"{mem['worker_peak_mb']:.0f} MB", "", ""))
        target("api RSS", "< 200 MB", f"{mem['api_peak_mb']:.0f} MB", mem["api_peak_mb"] < 200)
        target("worker RSS", "< 200 MB", f"{mem['worker_peak_mb']:.0f} MB", mem["worker_peak_mb"] < 200)
    soak = results.get("soak")
    if soak:
        minutes = results["plan"]["soak_seconds"] / 60
        for name in ("api", "worker"):
            s = soak[name]
            rows.append(
                (
                    f"Soak {minutes:g} min at {results['plan']['soak_rate']:g}/s: {name} RSS first → last tenth",
                    f"{s['first_mb']:.0f} → {s['last_mb']:.0f} MB",
                    f"peak {s['peak_mb']:.0f} MB",
                    soak["loadavg"],
                )
            )
            growth = s["last_mb"] - s["first_mb"]
            target(f"{name} RSS flat over the soak", "no growth (< 5 MB)", f"{growth:+.1f} MB", growth < 5)
    return rows, targets


def render(results: dict) -> str:
    rows, targets = figures(results)
    plan = results["plan"]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    lines = [
        BEGIN,
        f"Commit `{commit or 'unknown'}`{' with uncommitted changes in src/' if dirty else ''}, "
        f"run {results['started']} → {results['finished']} (UTC), on {platform.node() or 'this machine'}: "
        f"{os.cpu_count()} cores shared by the load generator, the api ({plan['api_workers']} process(es)), "
        f"the worker, PostgreSQL ({'fsync on' if plan['durable'] else 'fsync OFF'}) and Redis. "
        f"Each figure is the median of {plan['repeats']} run(s) of {plan['seconds']:g} s (sweep: one run a month of "
        f"history); all runs are listed, with the load average (1, 5, 15 min) when each began. "
        "The per-client submission limit is off (`REFERRAL_BROKER_SUBMIT_RATE=0`): every request comes from one "
        "address.",
        "",
        "| figure | median | runs | load average at start |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
        "| target | goal | measured | |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in targets],
        END,
    ]
    return "\n".join(lines)


def write_report(path: Path, results: dict) -> None:
    block = render(results)
    text = path.read_text() if path.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(head + block + tail)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through `finally`: the servers the bench started are stopped


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    args = _parser().parse_args(argv)
    plan = Plan.from_args(args)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rb-bench-"))
    say(f"plan: {plan}; data and logs in {workdir}")
    try:
        results = measure(plan, set(args.skip), workdir)
    finally:
        if args.workdir is None:  # the sweep's databases take gigabytes; keep them only when asked to
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    write_report(args.out, results)
    say(f"wrote {args.out}")
    for line in render(results).splitlines()[4:]:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
