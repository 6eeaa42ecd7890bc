"""Reading a private server's log file for error messages: only its tail, only what is new."""

from __future__ import annotations

from pathlib import Path

_LOG_TAIL_LINES = 20


def tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def log_size(log: Path) -> int:
    try:
        return log.stat().st_size
    except FileNotFoundError:
        return 0


def read_log(log: Path, offset: int = 0) -> str:
    try:
        with log.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def log_tail(log: Path) -> str:
    text = read_log(log)
    if not text:
        return f"({log} is empty or missing)"
    return f"last {_LOG_TAIL_LINES} lines of {log}:\n{tail(text)}"
