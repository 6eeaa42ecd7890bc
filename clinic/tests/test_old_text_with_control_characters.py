"""Referrals received before control characters were refused may hold them (NUL, BEL, ESC, VT, FF ...).
The clinic shows, prints and exports them with each such character replaced by U+FFFD, line breaks and
tabs kept in the need, so the FHIR bundle has a valid XML form and the PDF and the desk show clean text."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

from broker_stand_in import referral_payload
from clinic_folder import SLUG, Clinic
from desk_stand import DeskUnderTest, desk
from referral_clinic.cli import main
from referral_protocol.notice import NoticeKind
from referral_protocol.referral import Need
from test_desk_pdf import pdf_text
from test_notices import CORRECTED, notice_for, serve_notice

__all__ = ["desk"]

OLD_NEED = "Vondt\x00 i kneet\x07 etter\x1b[31m fotball.\x0b\x0cVerre om morgenen:\r\n\t- i trapper\x7f\x85"
OLD_NAME = "Kari\tNord\x1bmann"
#: XML 1.0's Char production: what an element's text may hold.
_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _old_referral(clinic: Clinic) -> Any:
    payload = referral_payload(SLUG)
    payload = msgspec.structs.replace(
        payload,
        need=Need(description=OLD_NEED, category="physiotherapy"),
        patient=msgspec.structs.replace(payload.patient, name=OLD_NAME),
    )
    return clinic.serve(payload)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_an_old_referral_with_control_characters_is_exported_to_fhir_with_them_replaced(clinic: Clinic) -> None:
    from fhir.resources.R4B.bundle import Bundle

    referral = _old_referral(clinic)
    assert clinic.pull("--format", "fhir") == 0
    bundle = json.loads((clinic.out / "fhir" / f"{referral.reference}.fhir.json").read_text())
    Bundle.model_validate(bundle)
    service_request, patient, _ = (e["resource"] for e in bundle["entry"])
    assert service_request["note"][0]["text"] == (
        "Vondt\ufffd i kneet\ufffd etter\ufffd[31m fotball.\ufffd\ufffdVerre om morgenen:\r\n\t- i trapper\ufffd\ufffd"
    )
    assert patient["name"] == [{"text": "Kari Nord\ufffdmann"}]
    assert [s for s in _strings(bundle) if _NOT_XML.search(s)] == []
    # the file as received is kept as it came: the clinic's record of what arrived
    kept = json.loads((clinic.out / f"{referral.reference}.json").read_text())
    assert OLD_NEED in _strings(kept)


def test_an_old_referral_with_control_characters_is_printed_and_shown_without_them(desk: DeskUnderTest) -> None:
    referral = _old_referral(desk.clinic)
    client = desk.browser()
    desk.unlock(client)
    desk.pull()
    text = pdf_text(desk.clinic.out / f"{referral.reference}.pdf")
    assert "Verre om morgenen:" in text and "i trapper" in text and "Kari Nord" in text
    assert not re.search(
        "[\x00-\x08\x0b\x0e-\x1f\x7f\x80-\x9f]", text.replace("\x0c", "")
    )  # pdftotext ends pages with FF
    page = client.get(f"/referral/{referral.reference}").text
    assert "Verre om morgenen:" in page
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f]", page)
    assert "Kari Nord\ufffdmann" in page


def test_the_export_command_gives_the_same_clean_text_as_the_pull(clinic: Clinic) -> None:
    referral = _old_referral(clinic)
    assert clinic.pull() == 0
    target = clinic.out.parent / "journal"
    assert main(["export", "--dir", str(clinic.dir), "--out", str(clinic.out), "--to", str(target)]) == 0
    bundle = json.loads((target / f"{referral.reference}.fhir.json").read_text())
    assert [s for s in _strings(bundle) if _NOT_XML.search(s)] == []


def test_a_correction_and_a_notice_message_with_control_characters_are_exported_without_them(clinic: Clinic) -> None:
    referral = clinic.serve()
    corrected = msgspec.structs.replace(CORRECTED, name="Kari\x00 Rettet")
    serve_notice(
        clinic, notice_for(referral, NoticeKind.CORRECTION, patient=corrected, message="Rettet\x1b av pasienten")
    )
    assert clinic.pull("--format", "fhir") == 0
    bundle = json.loads((clinic.out / "fhir" / f"{referral.reference}.fhir.json").read_text())
    service_request, patient, _ = (e["resource"] for e in bundle["entry"])
    assert patient["name"] == [{"text": "Kari\ufffd Rettet"}]
    assert service_request["note"][1]["text"] == "[correction] Rettet\ufffd av pasienten"
    assert [s for s in _strings(bundle) if _NOT_XML.search(s)] == []
