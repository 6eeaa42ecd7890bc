"""The start-at-login files and the README's command list say only what the clinic program really does.

Each start-at-login file (deploy/clinic/) runs a command that the program's own argument parser accepts,
and the README's `referral-clinic` list names every subcommand with exactly its real flags, so neither can
drift from the code unnoticed. `commands()` and `parsed()` serve the guide's tests too.
"""

from __future__ import annotations

import argparse
import os
import plistlib
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from defusedxml import ElementTree

from tests.clinic_program import build_parser

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "clinic"
TASK_NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}

_FLAG = re.compile(r"--[a-z][a-z-]*")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def commands() -> dict[str, argparse.ArgumentParser]:
    """Every command a clinic can type, by its words: "pull", "key rotate", … ("key" alone is not one)."""
    found: dict[str, argparse.ArgumentParser] = {}
    for name, sub in _subparsers(build_parser()).items():
        nested = _subparsers(sub)
        found.update({f"{name} {n}": s for n, s in nested.items()} if nested else {name: sub})
    return found


def flags_of(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"}


def parsed(argv: list[str]) -> argparse.Namespace:
    """The program's own parser reads `argv` (words after `referral-clinic`); an unknown flag fails the test."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"referral-clinic does not accept: {shlex.join(argv)}", pytrace=False)


def test_the_windows_task_opens_the_desk_with_real_flags_at_logon_and_never_times_out() -> None:
    task = ElementTree.parse(DEPLOY / "referral-clinic-desk.xml").getroot()
    assert task.tag == f"{{{TASK_NS['t']}}}Task"
    command = task.findtext("t:Actions/t:Exec/t:Command", namespaces=TASK_NS)
    arguments = task.findtext("t:Actions/t:Exec/t:Arguments", namespaces=TASK_NS)
    assert command is not None and arguments is not None
    assert command.endswith("\\referral-clinic.exe")
    args = parsed(shlex.split(arguments))
    assert (args.command, args.lang) == ("desk", "nb")
    assert str(args.dir).endswith("\\clinic") and str(args.out).endswith("\\referrals")
    # this user's logon only (any user's would need an administrator to register it), as this user
    assert task.findtext("t:Triggers/t:LogonTrigger/t:UserId", namespaces=TASK_NS) == "USER-NAME"
    assert task.findtext("t:Principals/t:Principal/t:UserId", namespaces=TASK_NS) == "USER-NAME"
    # the default limit (72 hours) would stop the desk on the third day
    assert task.findtext("t:Settings/t:ExecutionTimeLimit", namespaces=TASK_NS) == "PT0S"
    # running the task again gives a new desk (and a new link) instead of refusing
    assert task.findtext("t:Settings/t:MultipleInstancesPolicy", namespaces=TASK_NS) == "StopExisting"
    assert task.findtext("t:Principals/t:Principal/t:RunLevel", namespaces=TASK_NS) == "LeastPrivilege"
    (DEPLOY / "referral-clinic-desk.xml").read_bytes().decode("ascii")  # the same in UTF-8 and any code page


def test_the_launchd_agent_opens_the_desk_with_real_flags_at_login() -> None:
    path = DEPLOY / "no.example.referral-clinic.desk.plist"
    agent = plistlib.loads(path.read_bytes())
    assert path.name == f"{agent['Label']}.plist"
    program, *argv = agent["ProgramArguments"]
    assert program == "/Users/USERNAME/.local/bin/referral-clinic"
    args = parsed(argv)
    assert args.command == "desk"
    assert Path(args.dir).is_absolute() and Path(args.out).is_absolute()  # launchd expands no ~ nor $HOME
    assert agent["RunAtLoad"] is True and agent["KeepAlive"] is False


def _unit(path: Path) -> dict[str, list[str]]:
    entries: dict[str, list[str]] = {}
    for line in path.read_text("utf-8").splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            entries.setdefault(key.strip(), []).append(value.strip())
    return entries


def test_the_systemd_user_unit_watches_with_real_flags_and_stays_stopped_when_it_cannot_start() -> None:
    unit = _unit(DEPLOY / "referral-clinic-watch.service")
    program, *argv = shlex.split(unit["ExecStart"][0])
    assert program == "%h/.local/bin/referral-clinic"
    args = parsed(argv)
    assert args.command == "watch"
    assert unit["EnvironmentFile"] == ["%h/.config/referral-clinic/passphrase.env"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["RestartPreventExitStatus"] == ["2"]  # no passphrase or a damaged folder: retrying cannot help
    assert unit["WantedBy"] == ["default.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_finds_nothing_wrong_in_the_user_unit(tmp_path: Path) -> None:
    home, runtime = tmp_path / "home", tmp_path / "run"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".config" / "referral-clinic").mkdir(parents=True)
    (home / ".config" / "referral-clinic" / "passphrase.env").write_text("", encoding="utf-8")
    program = home / ".local" / "bin" / "referral-clinic"
    program.write_text("#!/bin/sh\n", encoding="utf-8")
    program.chmod(0o700)
    runtime.mkdir(mode=0o700)
    environment = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    verified = subprocess.run(
        [shutil.which("systemd-analyze") or "", "--user", "verify", str(DEPLOY / "referral-clinic-watch.service")],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    assert "referral-clinic-watch.service" not in verified.stderr, verified.stderr


def readme_clinic_commands() -> dict[str, set[str]]:
    """The README's list under "`referral-clinic`:": each bullet begins with a command and its flags."""
    lines = (ROOT / "README.md").read_text("utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("`referral-clinic`"))
    listed: dict[str, set[str]] = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            if listed:
                break
            continue
        if not line.startswith("- `"):
            continue
        span = line[3 : line.index("`", 3)]
        words = re.split(r"\s+(?=[-\[|])", span, maxsplit=1)
        listed[words[0]] = set(_FLAG.findall(span))
    return listed


def test_the_readme_lists_every_clinic_command_with_exactly_its_real_flags() -> None:
    real = commands()
    listed = readme_clinic_commands()
    assert set(listed) == set(real), f"not real: {set(listed) - set(real)}; not listed: {set(real) - set(listed)}"
    for name, flags in listed.items():
        assert flags == flags_of(real[name]), f"`{name}`: README {sorted(flags)}, real {sorted(flags_of(real[name]))}"


def test_the_readme_list_is_read_the_way_the_test_reads_it() -> None:
    listed = readme_clinic_commands()
    assert listed["export"] == {"--dir", "--out", "--to", "--reference"}  # the destination is --to, not --out
    assert listed["key rotate"] == {"--dir", "--replaces"}
