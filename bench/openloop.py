"""An open-loop load generator: requests leave on a clock, whatever the server is doing.

Run in its own process (`python -m bench.openloop ...`), so it does not share an event loop with
anything it measures. Request i is scheduled at `start + i / rate`; its latency is measured from that
scheduled moment, not from when a connection became free, so a server that falls behind is charged for
the whole wait (no coordinated omission). Connections are kept alive and opened as needed, up to
`--connections`; a request that finds none free waits for one, on its own clock.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies) to stay cheap: at 500 requests per
second a full HTTP client would take a large share of the one core it has to share with the server.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PATH = "/api/v1/referrals"


@dataclass
class Results:
    offered_rate: float
    duration: float
    scheduled: int = 0
    latencies_ok: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    accepted_at: list[tuple[str, float]] = field(default_factory=list)  # (reference, wall clock of the 201)
    trace: list[tuple[float, float, int]] = field(default_factory=list)  # (scheduled, latency, status)
    first_sent: float = 0.0
    last_done: float = 0.0

    def summary(self) -> dict[str, object]:
        ok = sorted(self.latencies_ok)
        span = max(self.last_done - self.first_sent, 1e-9)
        accepted = self.statuses.get(201, 0)
        return {
            "offered_rate": self.offered_rate,
            "duration_s": self.duration,
            "scheduled": self.scheduled,
            "accepted": accepted,
            "accepted_per_s": accepted / span if accepted else 0.0,
            "span_s": span,
            "p50_ms": _percentile(ok, 50) * 1000,
            "p99_ms": _percentile(ok, 99) * 1000,
            "max_ms": (ok[-1] if ok else 0.0) * 1000,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": self.errors,
            "accepted_at": self.accepted_at,
        }


def _percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def _requests(host: str, port: int, bodies: list[bytes]) -> list[bytes]:
    head = f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
    return [(head + f"Content-Length: {len(b)}\r\n\r\n").encode() + b for b in bodies]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body, and whether the server keeps the connection open."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    keep = True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep = False
    body = await reader.readexactly(length) if length else b""
    return status, body, keep


async def run(
    host: str,
    port: int,
    bodies: list[bytes],
    *,
    rate: float,
    duration: float,
    connections: int,
    record_references: bool = False,
    record_trace: bool = False,
    drain_timeout: float = 30.0,
) -> Results:
    requests = _requests(host, port, bodies)
    results = Results(offered_rate=rate, duration=duration)
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    opened = 0
    tasks: set[asyncio.Task[None]] = set()

    async def connection() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        nonlocal opened
        if idle.empty() and opened < connections:
            opened += 1
            try:
                return await asyncio.open_connection(host, port)
            except OSError:
                opened -= 1
                raise
        return await idle.get()

    async def one(i: int, scheduled: float) -> None:
        nonlocal opened
        try:
            reader, writer = await connection()
        except OSError as exc:
            results.errors[type(exc).__name__] = results.errors.get(type(exc).__name__, 0) + 1
            return
        try:
            writer.write(requests[i % len(requests)])
            status, body, keep = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            results.errors[type(exc).__name__] = results.errors.get(type(exc).__name__, 0) + 1
            writer.close()
            opened -= 1
            return
        done = time.perf_counter()
        if record_trace:
            results.trace.append((scheduled - results.first_sent, done - scheduled, status))
        results.last_done = max(results.last_done, done)
        results.statuses[status] = results.statuses.get(status, 0) + 1
        if status == 201:
            results.latencies_ok.append(done - scheduled)
            if record_references:
                results.accepted_at.append((json.loads(body)["reference"], time.time()))
        if keep:
            idle.put_nowait((reader, writer))
        else:
            writer.close()
            opened -= 1

    start = time.perf_counter() + 0.05
    results.first_sent = start
    total = int(rate * duration)
    i = 0
    while i < total:
        now = time.perf_counter()
        due = start + i / rate
        if due > now:
            await asyncio.sleep(due - now)
            continue
        # Everything due by now leaves now; each keeps its own scheduled time.
        while i < total and start + i / rate <= now:
            task = asyncio.create_task(one(i, start + i / rate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
    results.scheduled = total
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=drain_timeout)
        for task in pending:
            task.cancel()
        if pending:
            results.errors["unfinished"] = len(pending)
    while not idle.empty():
        idle.get_nowait()[1].close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.openloop")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bodies", type=Path, required=True, help="a file of request bodies, one JSON a line")
    parser.add_argument("--rate", type=float, required=True, help="requests per second, offered")
    parser.add_argument("--duration", type=float, required=True, help="seconds of offered load")
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--references", action="store_true", help="record each 201's reference and wall time")
    parser.add_argument(
        "--trace", type=Path, help="write each answer here: when it was due (s from the start), latency (ms), status"
    )
    args = parser.parse_args(argv)
    bodies = [line for line in args.bodies.read_bytes().splitlines() if line.strip()]
    try:
        from uvloop import run as run_loop
    except ImportError:
        run_loop = asyncio.run
    results = run_loop(
        run(
            args.host,
            args.port,
            bodies,
            rate=args.rate,
            duration=args.duration,
            connections=args.connections,
            record_references=args.references,
            record_trace=args.trace is not None,
        )
    )
    if args.trace is not None:
        with args.trace.open("w") as handle:
            handle.write(f"# started at {time.time() - (time.perf_counter() - results.first_sent):.3f} (Unix time)\n")
            for at, latency, status in sorted(results.trace):
                handle.write(f"{at:.4f} {latency * 1000:.2f} {status}\n")
    json.dump(results.summary(), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
