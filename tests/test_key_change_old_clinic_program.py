"""How a clinic program released before broker key changes existed treats them (docs/protocol.md §11).

The old program is the real one: `referral-clinic` and `referral-protocol` as they were in the commit
before `key_change.py` was added, taken from this repository's history and run in a process of their
own. It is served a key-change statement, a referral signed by the old key and one signed by the new
key. It must not crash, must acknowledge only what it filed, must report nothing to the broker (so
nothing leaves the inbox), and must say to upgrade; the current program then takes everything from the
same folder.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import msgspec
import pytest

from referral_protocol.envelope import BrokerSigner, seal
from referral_protocol.key_change import KEY_CHANGE_KIND, KEY_CHANGE_REFERENCE, KeyChangeAction, make_statement

ROOT = Path(__file__).resolve().parent.parent
CLINIC_TESTS = ROOT / "clinic" / "tests"
PASSPHRASE = "correct horse battery staple"

_OLD_PROGRAM_PULL = r"""
import base64, json, sys
sys.path[:0] = sys.argv[1:4]
try:
    import referral_protocol.key_change  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("this is not the old program")
from broker_stand_in import BrokerStandIn
from referral_clinic.cli import main
served = json.loads(open(sys.argv[4]).read())
broker = BrokerStandIn(clinic_signing_key=base64.b64decode(served["clinic_signing_key"]))
for item in served["items"]:
    broker.add(item["id"], base64.b64decode(item["envelope"]))
code = main(["pull", "--dir", served["dir"], "--out", served["out"]], transport=broker.transport)
print(json.dumps({"code": code, "waiting": sorted(broker.inbox), "acknowledged": broker.acknowledged,
                  "reported": broker.refused}))
"""


def _old_sources(tmp_path: Path) -> Path:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("the old program is taken from git history, which this copy does not have")
    added = subprocess.run(
        [git, "log", "--diff-filter=A", "--format=%H", "--", "protocol/src/referral_protocol/key_change.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    before = f"{added[-1]}^"
    archive = subprocess.run(
        [git, "archive", "--format=tar", before, "clinic/src", "protocol/src"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    target = tmp_path / "old"
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def _statement(old: BrokerSigner, new: BrokerSigner, slug: str, recipient: bytes) -> tuple[str, bytes]:
    sid = str(uuid.uuid4())
    now = datetime.now(UTC)
    statement = make_statement(
        KeyChangeAction.ANNOUNCE, statement_id=sid, clinic=slug, issued_at=now, old_key=old.public_key,
        new_key=new.public_key,
    )  # fmt: skip
    sealed = seal(
        msgspec.json.encode(statement), kind=KEY_CHANGE_KIND, delivery_id=sid, reference=KEY_CHANGE_REFERENCE,
        clinic=slug, issued_at=now, recipient_keys=[recipient], signer=old,
    )  # fmt: skip
    return sid, sealed.data


def test_an_old_clinic_program_leaves_the_statement_waiting_loses_nothing_and_the_new_one_takes_it_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sys.path.insert(0, str(CLINIC_TESTS))
    try:
        from broker_stand_in import BrokerStandIn, referral_payload, sealed
        from clinic_folder import SLUG, init_argv
    finally:
        sys.path.remove(str(CLINIC_TESTS))
    from referral_clinic.cli import main
    from referral_clinic.session import unlock
    from referral_protocol.encoding import format_public_key

    old_sources = _old_sources(tmp_path)
    monkeypatch.setenv("REFERRAL_CLINIC_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("REFERRAL_CLINIC_KDF_PROFILE", "interactive")
    old, new = BrokerSigner.generate(), BrokerSigner.generate()
    folder, out = tmp_path / "clinic", tmp_path / "referrals"
    assert main(init_argv(folder, format_public_key(old.public_key))) == 0
    secrets_ = unlock(folder, PASSPHRASE).secrets
    recipient = secrets_.encryption_public(0)

    statement_id, statement = _statement(old, new, SLUG, recipient)
    by_old, by_new = referral_payload(SLUG), referral_payload(SLUG)
    items = [
        (statement_id, statement),
        (by_old.delivery_id, sealed(by_old, signer=old, recipient_keys=[recipient])),
        (by_new.delivery_id, sealed(by_new, signer=new, recipient_keys=[recipient])),
    ]
    served = tmp_path / "served.json"
    served.write_text(
        json.dumps(
            {
                "clinic_signing_key": base64.b64encode(secrets_.signing_public).decode(),
                "dir": str(folder),
                "out": str(out),
                "items": [{"id": i, "envelope": base64.b64encode(e).decode()} for i, e in items],
            }
        )
    )
    script = [
        sys.executable, "-c", _OLD_PROGRAM_PULL, str(old_sources / "clinic" / "src"),
        str(old_sources / "protocol" / "src"), str(CLINIC_TESTS), str(served),
    ]  # fmt: skip
    # Not measured: the old release is not this tree's code, and its copy would count as a second, uncovered
    # referral_clinic in the coverage report.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("COVERAGE")}
    ran = subprocess.run(script, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert ran.returncode == 0, ran.stderr  # the old program did not crash
    result = json.loads(ran.stdout.splitlines()[-1])
    assert result["code"] == 1  # incomplete: it says so in its exit code
    assert result["acknowledged"] == [by_old.delivery_id]  # what it could read, it filed
    assert result["waiting"] == sorted([statement_id, by_new.delivery_id])  # the rest waits at the broker
    assert result["reported"] == {}  # nothing was reported, so nothing left the inbox
    assert "'broker-key-change', which this version of referral-clinic cannot read; upgrade it" in ran.stderr
    assert "signed by a key other than the pinned broker key" in ran.stderr
    assert (out / f"{by_old.reference}.json").exists() and not (out / f"{by_new.reference}.json").exists()

    # Upgraded: the current program, same folder, same inbox, takes the statement and what waited.
    broker = BrokerStandIn(clinic_signing_key=secrets_.signing_public)
    for sid, envelope in items:
        if sid in result["waiting"]:
            broker.add(sid, envelope)
    assert main(["pull", "--dir", str(folder), "--out", str(out)], transport=broker.transport) == 0
    assert broker.inbox == {} and sorted(broker.acknowledged) == sorted(result["waiting"])
    assert (out / f"{by_new.reference}.json").exists()
    assert "announced a new signing key" in capsys.readouterr().err
