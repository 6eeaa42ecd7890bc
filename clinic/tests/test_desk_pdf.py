"""The PDF per referral (written beside the JSON, again when a notice arrives, æøå intact), and the desk's
texts: every one has its Norwegian translation in the catalogue."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from datetime import date
from pathlib import Path

import msgspec
import pytest
from babel.messages.extract import extract_from_dir

from broker_stand_in import CANARY_NEED, referral_payload
from clinic_folder import SLUG
from desk_stand import DeskUnderTest, desk
from referral_clinic import desk as desk_package
from referral_clinic.desk.texts import _catalogue
from referral_protocol.notice import NoticeKind
from referral_protocol.referral import Patient
from test_notices import notice_for, serve_notice

__all__ = ["desk"]
ARTEFACTS = Path(os.environ.get("DESK_ARTEFACTS", Path(__file__).resolve().parents[2] / "test-artifacts" / "desk"))


def pdf_text(path: Path) -> str:
    pdftotext = shutil.which("pdftotext")
    if pdftotext is None:
        pytest.fail("pdftotext is missing: install Debian's poppler-utils (`make system-tools` as root does)")
    return subprocess.run([pdftotext, "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


def test_a_pdf_is_written_beside_the_json_in_the_clinics_language_with_aeoeaa_intact(desk: DeskUnderTest) -> None:
    payload = referral_payload(SLUG)
    patient = Patient(
        name="Åse Ødegård Ærlig", email="ase@example.no", phone="+4741234567", birth_date=date(1990, 5, 17)
    )
    payload = msgspec.structs.replace(payload, patient=patient)
    desk.clinic.serve(payload)
    client = desk.browser()
    desk.unlock(client)
    desk.pull()
    path = desk.clinic.out / f"{payload.reference}.pdf"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = pdf_text(path)
    for expected in ("Åse Ødegård Ærlig", CANARY_NEED, "Fysioterapi", "+47 41 23 45 67", "17. mai 1990", "Samtykke"):
        assert expected in text, expected
    assert "Henvisning " + payload.reference in text
    download = client.get(f"/referral/{payload.reference}/pdf")
    assert download.status_code == 200 and download.headers["content-type"] == "application/pdf"
    assert download.content == path.read_bytes()
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
    assert "DejaVu" in fonts and " yes " in fonts  # embedded
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, ARTEFACTS / "referral.pdf")


def test_the_pdf_is_written_again_when_a_withdrawal_arrives(desk: DeskUnderTest) -> None:
    referral = desk.clinic.serve()
    client = desk.browser()
    desk.unlock(client)
    desk.pull()
    path = desk.clinic.out / f"{referral.reference}.pdf"
    assert "trukket tilbake" not in pdf_text(path)
    serve_notice(desk.clinic, notice_for(referral, NoticeKind.WITHDRAWAL))
    desk.pull()
    text = pdf_text(path)
    assert "Pasienten har trukket tilbake samtykket" in text
    assert "Ikke kontakt pasienten" in text
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, ARTEFACTS / "referral-withdrawn.pdf")


def test_every_desk_text_has_a_norwegian_translation() -> None:
    folder = Path(desk_package.__file__).parent
    method_map = [("**.py", "python"), ("**/templates/**.html", "jinja2")]
    options = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    keywords = {"_": None, "N_": None, "gettext": None, "ngettext": (1, 2)}
    found = {
        message if isinstance(message, str) else message[0]
        for _, _, message, _, _ in extract_from_dir(str(folder), method_map, options, keywords=keywords)
    }
    assert len(found) > 80  # the extraction saw the templates and the code
    missing = sorted(found - set(_catalogue("nb")))
    assert not missing, f"no Norwegian text for: {missing}"
