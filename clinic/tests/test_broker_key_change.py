"""The broker's signing key changes (docs/protocol.md, "Broker key changes"): the clinic pins the announced
key beside the old one, accepts both, drops the old one when told, and says plainly what to do when it
meets a key it never heard of — leaving such envelopes waiting at the broker, never refusing them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from clinic_folder import SLUG, Clinic
from desk_stand import DeskUnderTest, desk  # noqa: F401 - the fixture
from referral_clinic import broker_pins
from referral_clinic.cli import main
from referral_clinic.keystore import ClinicDir
from referral_protocol.encoding import format_public_key, key_id
from referral_protocol.envelope import BrokerSigner, seal
from referral_protocol.key_change import (
    KEY_CHANGE_KIND,
    KEY_CHANGE_REFERENCE,
    KeyChangeAction,
    broker_key_fingerprint,
    make_statement,
)


def serve_statement(
    clinic: Clinic,
    action: KeyChangeAction,
    *,
    old: BrokerSigner,
    new: BrokerSigner,
    signer: BrokerSigner,
    fingerprint: str | None = None,
) -> str:
    statement_id = str(uuid.uuid4())
    statement = make_statement(
        action, statement_id=statement_id, clinic=SLUG, issued_at=datetime.now(UTC), old_key=old.public_key,
        new_key=new.public_key,
    )  # fmt: skip
    if fingerprint is not None:
        statement = msgspec.structs.replace(statement, new_key_fingerprint=fingerprint)
    envelope = seal(
        msgspec.json.encode(statement),
        kind=KEY_CHANGE_KIND,
        delivery_id=statement_id,
        reference=KEY_CHANGE_REFERENCE,
        clinic=SLUG,
        issued_at=datetime.now(UTC),
        recipient_keys=[clinic.secrets.encryption_public(0)],
        signer=signer,
    ).data
    clinic.broker.add(statement_id, envelope)
    return statement_id


def pinned(clinic: Clinic) -> tuple[bytes, tuple[bytes, ...]]:
    return ClinicDir(clinic.dir).load_config().broker_public_key, broker_pins.extra_keys(clinic.dir)


def test_an_announced_key_is_pinned_beside_the_old_and_both_are_accepted(
    clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = clinic.broker_signer, BrokerSigner.generate()
    statement = serve_statement(clinic, KeyChangeAction.ANNOUNCE, old=old, new=new, signer=old)
    statement_envelope = clinic.broker.inbox[statement]
    signed_by_new = clinic.serve(signer=new)  # after the statement, in the same page
    signed_by_old = clinic.serve(signer=old)
    assert clinic.pull() == 0
    out, err = capsys.readouterr()
    assert f"announced a new signing key {new.key_id} (fingerprint {broker_key_fingerprint(new.public_key)})" in err
    assert "pulled 3, written 2, acknowledged 3" in out
    assert set(clinic.broker.acknowledged) == {statement, signed_by_new.delivery_id, signed_by_old.delivery_id}
    assert pinned(clinic) == (old.public_key, (new.public_key,))
    history = broker_pins.load(clinic.dir).changes
    assert [(c.action, c.key_id, c.via) for c in history] == [("announce", new.key_id, statement)]
    assert main(["status", "--dir", str(clinic.dir)], transport=clinic.broker.transport) == 0
    status = capsys.readouterr().out
    assert f"broker key trusted: {old.key_id}" in status
    assert f"broker key trusted: {new.key_id} (fingerprint {broker_key_fingerprint(new.public_key)})" in status

    # Served again (every machine of the clinic must see it): nothing changes, nothing is said, and it is not
    # acknowledged a second time from this machine (the ledger would grow by a line a pull).
    clinic.broker.add(statement, statement_envelope)
    calls = len(clinic.broker.ack_calls)
    lines = len(clinic.ledger_events())
    assert clinic.pull() == 0
    assert "announced" not in capsys.readouterr().err
    assert len(broker_pins.load(clinic.dir).changes) == 1
    assert len(clinic.broker.ack_calls) == calls and len(clinic.ledger_events()) == lines


def test_a_retirement_makes_the_new_key_the_pinned_one_and_drops_the_old(
    clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = clinic.broker_signer, BrokerSigner.generate()
    serve_statement(clinic, KeyChangeAction.ANNOUNCE, old=old, new=new, signer=old)
    assert clinic.pull() == 0
    serve_statement(clinic, KeyChangeAction.RETIRE, old=old, new=new, signer=new)
    assert clinic.pull() == 0
    assert f"retired its old signing key {old.key_id}" in capsys.readouterr().err
    assert pinned(clinic) == (new.public_key, ())
    assert ClinicDir(clinic.dir).load_config().broker_key == format_public_key(new.public_key)

    late = clinic.serve(signer=old)  # the old key is no longer trusted: left waiting, never reported
    assert clinic.pull() == 1
    err = capsys.readouterr().err
    assert f"signed by broker key {old.key_id}, which this clinic has not pinned" in err
    assert late.delivery_id in clinic.broker.inbox and clinic.broker.refused == {}


def test_an_unknown_key_is_left_waiting_with_what_to_do_then_pinned_from_a_file(
    clinic: Clinic, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A clinic that missed the announcement: told to re-pin out of band, and after it has, it receives."""
    new = BrokerSigner.generate()
    waiting = clinic.serve(signer=new)
    assert clinic.pull() == 1
    err = capsys.readouterr().err
    assert f"signed by broker key {new.key_id}, which this clinic has not pinned" in err
    assert "nothing is lost" in err and "referral-clinic pin-broker-key" in err and str(clinic.dir) in err
    assert waiting.delivery_id in clinic.broker.inbox and clinic.broker.refused == {}  # never reported

    pub = tmp_path / "broker.pub"
    pub.write_text(format_public_key(new.public_key) + "\n")
    fingerprint = broker_key_fingerprint(new.public_key)
    argv = ["pin-broker-key", "--dir", str(clinic.dir), "--file", str(pub)]
    assert main(argv) == 2  # without --fingerprint: shown, nothing pinned
    assert f"fingerprint {fingerprint}" in capsys.readouterr().out
    assert main([*argv, "--fingerprint", "AAAA-BBBB"]) == 2
    assert "does not match" in capsys.readouterr().err
    assert pinned(clinic)[1] == ()
    assert main([*argv, "--fingerprint", fingerprint.lower().replace("-", " ")]) == 0
    assert f"pinned broker key {new.key_id}" in capsys.readouterr().out
    assert main([*argv, "--fingerprint", fingerprint]) == 0
    assert "already pinned" in capsys.readouterr().out

    assert clinic.pull() == 0
    assert waiting.delivery_id in clinic.broker.acknowledged
    assert (clinic.out / f"{waiting.reference}.json").exists()


def test_a_statement_not_signed_as_its_action_requires_pins_nothing(
    clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new, stranger = clinic.broker_signer, BrokerSigner.generate(), BrokerSigner.generate()
    # an "announcement" signed by the key it announces: that key is not pinned, so it is not even verified
    forged = serve_statement(clinic, KeyChangeAction.ANNOUNCE, old=old, new=stranger, signer=stranger)
    # a retirement signed by the old key, and an announcement whose fingerprint is not the new key's
    wrong_signer = serve_statement(clinic, KeyChangeAction.RETIRE, old=old, new=new, signer=old)
    wrong_print = serve_statement(clinic, KeyChangeAction.ANNOUNCE, old=old, new=new, signer=old, fingerprint="AAAA")
    assert clinic.pull() == 1
    err = capsys.readouterr().err
    assert "a key-change retire must be signed by the new key" in err
    assert "fingerprint is not the new key's" in err
    assert pinned(clinic) == (old.public_key, ())
    assert set(clinic.broker.inbox) == {forged, wrong_signer, wrong_print} and clinic.broker.refused == {}


def test_a_retirement_of_a_key_never_pinned_says_to_re_pin(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = clinic.broker_signer, BrokerSigner.generate()
    serve_statement(clinic, KeyChangeAction.RETIRE, old=old, new=new, signer=new)
    assert clinic.pull() == 1
    assert f"signed by broker key {new.key_id}, which this clinic has not pinned" in capsys.readouterr().err
    assert pinned(clinic) == (old.public_key, ())


def test_the_pull_report_names_the_change_for_scripts(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = clinic.broker_signer, BrokerSigner.generate()
    serve_statement(clinic, KeyChangeAction.ANNOUNCE, old=old, new=new, signer=old)
    assert clinic.pull("--json") == 0
    report = msgspec.json.decode(capsys.readouterr().out.splitlines()[0])
    assert len(report["key_changes"]) == 1 and key_id(new.public_key) in report["key_changes"][0]


def test_the_desk_shows_the_change_and_what_to_do_about_an_unknown_key(desk: DeskUnderTest) -> None:  # noqa: F811
    clinic = desk.clinic
    old, new = clinic.broker_signer, BrokerSigner.generate()
    client = desk.browser()
    desk.unlock(client)
    serve_statement(clinic, KeyChangeAction.ANNOUNCE, old=old, new=new, signer=old)
    desk.pull()
    page = client.get("/").text
    assert "Formidleren kunngjorde en ny signeringsnøkkel" in page
    assert broker_key_fingerprint(new.public_key) in page

    stranger = BrokerSigner.generate()
    clinic.serve(signer=stranger)
    desk.pull()
    page = client.get("/").text
    assert "en nøkkel denne klinikken ikke stoler på ennå" in page and "ingenting går tapt" in page
    assert "referral-clinic pin-broker-key" in page and stranger.key_id in page
