"""The tool starts without what a pull never uses: each run of `referral-clinic` pays for its imports."""

from __future__ import annotations

import json
import subprocess
import sys

UNUSED_BY_A_PULL = ("phonenumbers", "email_validator", "click", "pygments", "rich", "httpx._main")


def test_the_clinic_tool_imports_nothing_a_pull_without_a_terminal_does_not_use() -> None:
    probe = (
        "import sys, json, referral_clinic.cli\n"
        "from referral_clinic.progress import PullProgress\n"
        "PullProgress.on_terminal()\n"  # stderr is a pipe here, as under cron or a service
        f"print(json.dumps(sorted(m for m in {UNUSED_BY_A_PULL!r} if sys.modules.get(m) is not None)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


def test_httpx_still_works_without_its_command_line_client() -> None:
    probe = "import referral_clinic.cli, httpx\nprint(httpx.Client().base_url == httpx.URL(''))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True"
