"""What the desk shows and does: unlock, the inbox, one referral with its notices applied, marks, delete,
and a clear message for each thing that can go wrong (wrong passphrase, damaged folder, broker away,
another program in the folder, a full disk) with nothing lost."""

from __future__ import annotations

import errno
import re
from datetime import datetime
from pathlib import Path

import msgspec
import pytest

from broker_stand_in import CANARY_NAME, CANARY_NEED, referral_payload
from clinic_folder import SLUG, Clinic
from desk_stand import DeskUnderTest, desk, wait_until
from referral_clinic import durable, referral_file
from referral_clinic.desk.front import FrontDesk
from referral_clinic.desk.states import STATES_FILE, State
from referral_clinic.desk.texts import Texts
from referral_clinic.keystore import ClinicDir
from referral_protocol.notice import NoticeKind
from referral_protocol.referral import ReferralPayload
from test_notices import CORRECTED, notice_for, serve_notice

__all__ = ["desk"]


def _text(html: str) -> str:
    """The page as a reader sees it: tags gone, spaces collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_a_wrong_passphrase_is_named_on_the_page_and_the_desk_stays_locked(desk: DeskUnderTest) -> None:
    client = desk.browser()
    answer = desk.unlock(client, "not the passphrase at all")
    assert answer.status_code == 422
    assert "Feil passordfrase" in answer.text
    assert 'aria-invalid="true"' in answer.text
    assert desk.running.front.session is None
    assert desk.unlock(client).status_code == 303
    assert desk.running.front.session is not None


def test_a_damaged_key_folder_is_named_on_the_unlock_page_and_nothing_is_changed(desk: DeskUnderTest) -> None:
    key_file = desk.clinic.dir / "clinic.key"
    key_file.write_bytes(b"not a key file")
    client = desk.browser()
    answer = desk.unlock(client)
    assert answer.status_code == 422
    assert "kunne ikke låses opp" in answer.text and "damaged" in answer.text
    assert key_file.read_bytes() == b"not a key file"


def test_a_folder_that_cannot_be_read_shows_what_is_wrong_instead_of_the_passphrase_field(
    clinic: Clinic, tmp_path: Path
) -> None:
    (clinic.dir / "config.json").write_text("{broken")
    front = FrontDesk(clinic.dir, clinic.out, Texts("en"))
    assert front.folder_problem is not None and "config.json" in front.folder_problem


def test_after_unlocking_a_referral_arrives_by_itself_newest_first(clinic: Clinic) -> None:
    from referral_clinic.desk.server import open_desk

    running = open_desk(clinic.dir, clinic.out, lang="nb", transport=clinic.broker.transport, interval=0.1)
    running.serve_in_background()
    try:
        stand = DeskUnderTest(running, clinic)
        client = stand.browser()
        stand.unlock(client)
        first = clinic.serve()
        wait_until(lambda: first.reference in client.get("/").text)
        second = clinic.serve(referral_payload(SLUG))
        wait_until(lambda: second.reference in client.get("/").text)
        page = client.get("/").text
        assert _received(clinic, first) < _received(clinic, second)
        assert page.index(second.reference) < page.index(first.reference)  # newest first
        row = _text(page)
        assert CANARY_NAME in row and "Fysioterapi" in row and "Ny" in row
        assert 'id="live" data-version=' in page and "/static/desk.js" in page  # looks for arrivals by itself
        assert clinic.broker.acknowledged == [first.delivery_id, second.delivery_id]
    finally:
        running.stop()


def _received(clinic: Clinic, payload: ReferralPayload) -> datetime:
    return referral_file.read(clinic.out / f"{payload.reference}.json").received_at


def test_one_referral_is_shown_in_plain_norwegian_with_local_times(desk: DeskUnderTest) -> None:
    referral = desk.clinic.serve()
    client = desk.browser()
    desk.unlock(client)
    desk.pull()
    page = _text(client.get(f"/referral/{referral.reference}").text)
    assert CANARY_NEED in page and CANARY_NAME in page and "kari@example.no" in page
    assert "+47 41 23 45 67" in page
    assert "17. mai 1990" in page and " år)" in page
    assert "Fysioterapi" in page
    assert "2026-11-01" in page and "Jeg samtykker til" in page
    assert "20. nov. 2026 kl. 10:30" in page  # sent 09:30 UTC, shown in Oslo time
    assert "physiotherapy" not in page and referral.delivery_id not in page and "null" not in page


def test_the_desk_speaks_english_when_the_clinic_chooses_it(clinic: Clinic) -> None:
    from referral_clinic.desk.server import open_desk

    running = open_desk(clinic.dir, clinic.out, lang="en", transport=clinic.broker.transport, interval=3600)
    running.serve_in_background()
    try:
        stand = DeskUnderTest(running, clinic)
        referral = clinic.serve()
        client = stand.browser()
        assert "Unlock the desk" in client.get("/").text
        stand.unlock(client)
        stand.pull()
        page = _text(client.get(f"/referral/{referral.reference}").text)
        assert "What the patient needs help with" in page and "Physiotherapy" in page
        assert "17 May 1990" in page and "I consent" in page and "20 Nov 2026, 10:30" in page
    finally:
        running.stop()


def test_a_correction_is_shown_applied_with_what_changed_and_when(desk: DeskUnderTest) -> None:
    referral = desk.clinic.serve()
    client = desk.browser()
    desk.unlock(client)
    desk.pull()
    serve_notice(desk.clinic, notice_for(referral, NoticeKind.CORRECTION))
    desk.pull()
    html = client.get(f"/referral/{referral.reference}").text
    page = _text(html)
    assert f"Navn {CORRECTED.name}" in page  # the details now are the corrected ones
    assert "Rettet av pasienten" in page
    assert f"<del>{CANARY_NAME}</del>" in html and f"<ins>{CORRECTED.name}</ins>" in html
    assert "<del>+47 41 23 45 67</del>" in html and "<ins>+47 99 98 88 77</ins>" in html
    assert CORRECTED.name in client.get("/").text


@pytest.mark.parametrize(
    ("kind", "heading", "state"),
    [
        (NoticeKind.WITHDRAWAL, "Pasienten har trukket tilbake samtykket", "Trukket tilbake"),
        (NoticeKind.ERASURE, "Pasienten har bedt om at opplysningene blir slettet", "Sletting bedt om"),
    ],
)
def test_a_withdrawal_or_erasure_is_shown_at_the_top_with_what_to_do(
    desk: DeskUnderTest, kind: NoticeKind, heading: str, state: str
) -> None:
    referral = desk.clinic.serve()
    client = desk.browser()
    desk.unlock(client)
    desk.pull()
    serve_notice(desk.clinic, notice_for(referral, kind))
    desk.pull()
    html = client.get(f"/referral/{referral.reference}").text
    assert heading in html and "Dette skal dere gjøre:" in html
    assert html.index(heading) < html.index("Hva pasienten trenger hjelp til")
    assert state in _text(client.get("/").text)
    assert heading in client.get(f"/referral/{referral.reference}/print").text


def test_read_and_handled_marks_are_kept_on_disk_and_survive_a_restart(desk: DeskUnderTest) -> None:
    referral = desk.clinic.serve()
    client = desk.browser()
    desk.unlock(client)
    desk.pull()
    csrf = desk.csrf(client)
    answer = client.post(f"/referral/{referral.reference}/mark", data={"csrf": csrf, "state": "read"})
    assert answer.status_code == 303
    assert "Lest" in _text(client.get("/").text)
    client.post(f"/referral/{referral.reference}/mark", data={"csrf": csrf, "state": "handled"})
    saved = msgspec.json.decode((desk.clinic.dir / STATES_FILE).read_bytes())
    assert saved["marked"][referral.reference]["state"] == "handled"
    again = FrontDesk(desk.clinic.dir, desk.clinic.out, Texts("nb"))
    found = again.referral(referral.reference)
    assert found is not None and found[1] == State.HANDLED
    assert client.get("/?state=handled").text.count(referral.reference) >= 1
    assert referral.reference not in client.get("/?state=new").text


def test_filter_by_state_and_search_by_name_or_reference(desk: DeskUnderTest) -> None:
    first = desk.clinic.serve()
    second = desk.clinic.serve(referral_payload(SLUG))
    client = desk.browser()
    desk.unlock(client)
    desk.pull()
    serve_notice(desk.clinic, notice_for(second, NoticeKind.WITHDRAWAL))
    desk.pull()
    assert first.reference in client.get("/?state=new").text
    assert second.reference not in client.get("/?state=new").text
    assert second.reference in client.get("/?state=withdrawn").text
    by_reference = client.get("/", params={"q": first.reference.lower()}).text
    assert first.reference in by_reference and second.reference not in by_reference
    assert "Ingen henvisning passer" in client.get("/", params={"q": "Ola Nordmann"}).text
    by_name = client.get("/", params={"q": "canarysdatter"}).text
    assert first.reference in by_name and second.reference in by_name


def test_delete_removes_every_file_keeps_the_ledger_and_the_referral_never_comes_back(desk: DeskUnderTest) -> None:
    clinic = desk.clinic
    referral = clinic.serve()
    client = desk.browser()
    desk.unlock(client)
    desk.pull()
    serve_notice(clinic, notice_for(referral, NoticeKind.WITHDRAWAL))
    desk.pull()
    files = sorted(p.name for p in clinic.out.iterdir() if p.name.startswith(referral.reference))
    assert len(files) == 3  # the referral, the withdrawal, the PDF
    csrf = desk.csrf(client)
    assert "Slette henvisning" in client.get(f"/referral/{referral.reference}/delete").text
    answer = client.post(f"/referral/{referral.reference}/delete", data={"csrf": csrf, "confirm": "yes"})
    assert answer.status_code == 303
    assert "ble slettet" in client.get(answer.headers["location"]).text
    assert not [p for p in clinic.out.iterdir() if p.name.startswith(referral.reference)]
    deleted = [e for e in clinic.ledger_events() if e["event"] == "deleted"]
    assert {e["delivery_id"] for e in deleted} == {referral.delivery_id, *(e["delivery_id"] for e in deleted)}
    assert len(deleted) == 2 and all(e["reference"] == referral.reference for e in deleted)
    # the broker serves it again (a replay): the ledger knows it, so it is acknowledged and not written
    clinic.serve(referral)
    desk.pull()
    assert not (clinic.out / f"{referral.reference}.json").exists()
    assert clinic.broker.inbox == {}
    # a notice that arrives after the delete is removed too
    serve_notice(clinic, notice_for(referral, NoticeKind.ERASURE))
    desk.pull()
    assert not [p for p in clinic.out.iterdir() if p.name.startswith(referral.reference)]
    assert client.get(f"/referral/{referral.reference}").status_code == 404


def test_the_broker_away_is_told_plainly_and_nothing_is_lost(desk: DeskUnderTest) -> None:
    referral = desk.clinic.serve()
    client = desk.browser()
    desk.unlock(client)
    desk.clinic.broker.answer_status = 503
    desk.pull()
    assert "svarer ikke akkurat nå" in client.get("/").text
    desk.clinic.broker.answer_status = None
    desk.pull()
    page = client.get("/").text
    assert referral.reference in page and "svarer ikke" not in page


def test_another_program_in_the_folder_is_told_plainly_and_the_desk_tries_again(desk: DeskUnderTest) -> None:
    referral = desk.clinic.serve()
    client = desk.browser()
    desk.unlock(client)
    desk.pull()
    later = desk.clinic.serve(referral_payload(SLUG))
    with ClinicDir(desk.clinic.dir).locked():  # a `pull` or `watch` in another window
        desk.pull()
        assert "arbeider i denne klinikkmappen" in client.get("/").text
    desk.pull()
    page = client.get("/").text
    assert later.reference in page and referral.reference in page and "arbeider i" not in page


def test_a_full_disk_is_told_plainly_and_nothing_unsaved_is_acknowledged(
    desk: DeskUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = desk.browser()
    desk.unlock(client)
    referral = desk.clinic.serve()

    def full(self: durable.NewFiles) -> list[durable.Temp]:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(durable.NewFiles, "sync", full)
        desk.pull()
        page = client.get("/").text
        assert "kunne ikke lagre" in page and "No space left on device" in page
        assert referral.delivery_id in desk.clinic.broker.inbox  # not acknowledged: it waits at the broker
    desk.pull()
    assert referral.reference in client.get("/").text
    assert desk.clinic.broker.acknowledged == [referral.delivery_id]


def test_a_damaged_referral_file_is_named_and_left_as_it_is(desk: DeskUnderTest) -> None:
    referral = desk.clinic.serve()
    client = desk.browser()
    desk.unlock(client)
    desk.pull()
    damaged = desk.clinic.out / f"{referral.reference}.json"
    damaged.write_bytes(b'{"format": "referral-clinic/referral/v1", "patient": ')
    inbox = client.get("/")
    assert inbox.status_code == 200 and "kan ikke leses" in inbox.text and damaged.name in inbox.text
    page = client.get(f"/referral/{referral.reference}")
    assert page.status_code == 500 and "kan være skadet" in page.text and damaged.name in page.text
    assert damaged.read_bytes().endswith(b'"patient": ')


def test_a_long_inbox_shows_the_newest_200_reads_each_file_once_and_search_reaches_the_rest(
    desk: DeskUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, timedelta

    from referral_clinic.desk import front as front_module
    from referral_clinic.referral_file import ReceivedReferral

    out = desk.clinic.out
    start = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    references = []
    for n in range(205):
        payload = referral_payload(SLUG, reference=f"RB-{n:05d}-AAAAA")
        received = ReceivedReferral.from_payload(payload, received_at=start + timedelta(minutes=n))
        (out / f"{payload.reference}.json").write_bytes(referral_file.encode(received))
        references.append(payload.reference)
    client = desk.browser()
    desk.unlock(client)
    page = client.get("/").text
    assert page.count('<tr class="state-') == 200
    assert "205 henvisninger, nyeste først" in _text(page) and "Viser de 200 nyeste" in page
    assert references[-1] in page and references[0] not in page
    assert references[0] in client.get("/", params={"q": references[0]}).text
    reads: list[str] = []
    real_load = front_module.load
    monkeypatch.setattr(front_module, "load", lambda outdir, ref: reads.append(ref) or real_load(outdir, ref))
    client.get("/")
    assert reads == []  # nothing changed, nothing read again
    changed = ReceivedReferral.from_payload(referral_payload(SLUG, reference=references[3]), received_at=start)
    (out / f"{references[3]}.json").write_bytes(referral_file.encode(changed) + b" ")
    client.get("/")
    assert reads == [references[3]]
    # the PDFs of a folder of older referrals are caught up a bounded number a pull, newest first
    pdfs = sorted(p.name for p in out.glob("*.pdf"))
    assert 0 < len(pdfs) <= 20 and f"{references[-1]}.pdf" in pdfs


def test_a_mark_or_delete_the_disk_refuses_is_told_plainly_and_changes_nothing(
    desk: DeskUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    referral = desk.clinic.serve()
    client = desk.browser()
    desk.unlock(client)
    desk.pull()
    csrf = desk.csrf(client)

    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(durable, "write_new_file", full)
        answer = client.post(f"/referral/{referral.reference}/mark", data={"csrf": csrf, "state": "handled"})
        assert answer.status_code == 503
        assert "kunne ikke lagre endringen" in answer.text and "No space left on device" in answer.text
    assert not (desk.clinic.dir / STATES_FILE).exists()
    assert "Ny" in _text(client.get("/").text)

    def refused(self: Path, missing_ok: bool = False) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    with monkeypatch.context() as patched:
        patched.setattr(Path, "unlink", refused)
        answer = client.post(f"/referral/{referral.reference}/delete", data={"csrf": csrf, "confirm": "yes"})
        assert answer.status_code == 503 and "Read-only file system" in answer.text
        assert "registrert som slettet" in answer.text
    # the ledger said "deleted" before the files went: the next pull's sweep finishes the job
    desk.pull()
    assert not (desk.clinic.out / f"{referral.reference}.json").exists()
