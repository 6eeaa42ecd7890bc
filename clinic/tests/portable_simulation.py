"""`REFERRAL_CLINIC_SIMULATE_PORTABLE=1`: run the clinic tests on Linux as if on a system without `fcntl`,
`os.O_TMPFILE` or the fork start method (Windows has none of them, macOS no O_TMPFILE and no safe fork).

`install` must run before anything imports the clinic package (clinic/tests/clinic_folder.py, which
conftest.py imports first, calls it; `make test` runs this mode as `pytest clinic/tests`, under the clinic's
own pyproject, so the broker suite's conftest is not loaded). What it blocks is really gone:
`test_portable_simulation` checks.
"""

from __future__ import annotations

import importlib.abc
import multiprocessing
import multiprocessing.context
import os
import sys
from typing import Any

ENV = "REFERRAL_CLINIC_SIMULATE_PORTABLE"
BLOCKED_MODULES = ("fcntl",)


def wanted() -> bool:
    return os.environ.get(ENV, "") == "1"


class _Blocked(importlib.abc.MetaPathFinder):
    """`import fcntl` fails as it does on Windows, for whoever asks after the block goes up."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name in BLOCKED_MODULES:
            raise ModuleNotFoundError(f"No module named {name!r} (simulated: {ENV}=1)", name=name)
        return None


#: What must not be imported yet when the block goes up (pytest itself may have imported fcntl: what it holds
#: it keeps, but no later `import fcntl` succeeds).
NOT_YET = ("referral_clinic", "referral_protocol")


def install() -> None:
    too_early = [name for name in sys.modules if name.split(".")[0] in NOT_YET]
    if too_early:
        raise RuntimeError(f"{ENV}=1 came too late: {sorted(too_early)[:5]} already imported")
    # filelock keeps the OS lock it finds here, as it finds LockFileEx through msvcrt on Windows: without fcntl it
    # would fall back to a soft lock (a file that merely exists), which no real system of a clinic uses, and which
    # a lock file left by another process's OS lock would trip. Our own code is what must do without fcntl.
    import filelock  # noqa: F401

    for name in BLOCKED_MODULES:
        sys.modules[name] = None  # type: ignore[assignment]  # what `import` of a missing module then raises
    sys.meta_path.insert(0, _Blocked())
    if hasattr(os, "O_TMPFILE"):
        del os.O_TMPFILE
    methods = [m for m in multiprocessing.get_all_start_methods() if m != "fork"]
    multiprocessing.get_all_start_methods = lambda: list(methods)  # type: ignore[assignment]
    real_get_context = multiprocessing.context.DefaultContext.get_context

    def get_context(self: Any, method: str | None = None) -> Any:
        if method == "fork":
            raise ValueError(f"cannot find context for 'fork' (simulated: {ENV}=1)")
        return real_get_context(self, method)

    multiprocessing.context.DefaultContext.get_context = get_context  # type: ignore[method-assign]
    multiprocessing.get_context = multiprocessing.context._default_context.get_context
