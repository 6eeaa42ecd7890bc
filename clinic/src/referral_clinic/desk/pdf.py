"""`OUTDIR/<reference>.pdf`: one referral as a document a journal system can take in, written beside its JSON.

Built from the same local view as the desk's page (`referral_view.load`, notices applied), in the
clinic's language, with DejaVu Sans embedded (it has æ, ø and å; its licence ships beside it in
`fonts/`). Written durably (temp file, fsync, rename) and written again whenever a notice arrives:
`refresh` rewrites every PDF older than the newest file of its referral.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from referral_clinic import durable, referral_file
from referral_clinic.desk.deletion import PDF_SUFFIX, pdf_path
from referral_clinic.desk.texts import N_, Texts, phone_shown, today_in_oslo
from referral_clinic.fhir import FHIR_SUFFIX
from referral_clinic.referral_view import LocalReferral, ReferralUnreadable, files_by_reference, load
from referral_protocol.consent import CONSENT_VERSION
from referral_protocol.validation import without_control_characters
from referral_protocol.wording import consent_texts

FONT = "DejaVu"
PDFS_A_PULL = 20
# fpdf2 warns of glyphs the font lacks by quoting them, and they come from a referral: never into a log.
logging.getLogger("fpdf").setLevel(logging.ERROR)
FIELD_NAMES = {"name": N_("Name"), "email": N_("E-mail"), "phone": N_("Phone"), "birth_date": N_("Birth date")}


def render(referral: LocalReferral, texts: Texts, clinic_name: str) -> bytes:
    _ = texts.gettext
    doc = FPDF(format="A4")
    doc.set_margins(18, 18, 18)
    doc.set_auto_page_break(True, margin=18)
    fonts = resources.files(__package__).joinpath("fonts")
    with resources.as_file(fonts.joinpath("DejaVuSans.ttf")) as regular:
        doc.add_font(FONT, "", str(regular))
    with resources.as_file(fonts.joinpath("DejaVuSans-Bold.ttf")) as bold:
        doc.add_font(FONT, "B", str(bold))
    title = _("Referral %(reference)s") % {"reference": referral.reference}
    doc.set_title(title)
    doc.set_creator("referral-clinic")
    doc.set_lang(texts.lang)
    doc.add_page()
    doc.set_font(FONT, "B", 16)
    _line(doc, title, 9)
    doc.set_font(FONT, "", 10)
    _line(doc, clinic_name, 6)
    doc.ln(3)
    for notice, heading, advice in (
        (referral.erasure, _("The patient has asked for their data to be erased"), _(ERASURE_ADVICE)),
        (referral.withdrawal, _("The patient has withdrawn their consent"), _(WITHDRAWAL_ADVICE)),
    ):
        if notice is not None:
            doc.set_fill_color(253, 236, 234)
            doc.set_font(FONT, "B", 12)
            _line(doc, f"{heading} ({texts.when(notice.requested_at)})", 7, fill=True)
            doc.set_font(FONT, "", 10)
            doc.multi_cell(0, 5.5, advice, fill=True, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            doc.ln(3)
    _section(doc, _("What the patient needs help with"))
    doc.multi_cell(0, 5.5, _printable(referral.need.description), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _pair(doc, _("Category"), texts.category(referral.need.category))
    _section(doc, _("Patient"))
    patient = referral.patient
    today = today_in_oslo(datetime.now(UTC))
    _pair(doc, _("Name"), patient.name)
    _pair(doc, _("E-mail"), patient.email)
    _pair(doc, _("Phone"), phone_shown(patient.phone))
    _pair(doc, _("Birth date"), f"{texts.day(patient.birth_date)} ({texts.age(patient.birth_date, today)})")
    for correction in referral.corrections:
        doc.set_font(FONT, "B", 10)
        _line(doc, _("Corrected by the patient on %(when)s:") % {"when": texts.when(correction.issued_at)}, 6)
        doc.set_font(FONT, "", 10)
        for change in correction.changes:
            label = _(FIELD_NAMES[change.field])
            before, after = _shown(change.field, change.before), _shown(change.field, change.after)
            doc.multi_cell(0, 5.5, f"{label}: {before} → {after}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _section(doc, _("Sent and received"))
    _pair(doc, _("Sent by the patient"), texts.when(referral.submitted_at))
    _pair(doc, _("Received by the clinic"), texts.when(referral.received_at))
    _section(doc, _("Consent"))
    consent = referral.consent
    _pair(doc, _("Version"), consent.version)
    _pair(doc, _("Agreed"), texts.when(consent.accepted_at))
    text = consent_texts(CONSENT_VERSION).get(texts.lang) if consent_is_current(referral) else None
    if text:
        doc.ln(1)
        doc.set_font(FONT, "B", 10)
        _line(doc, _("The text the patient agreed to:"), 6)
        doc.set_font(FONT, "", 9)
        doc.multi_cell(0, 4.8, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(doc.output())


ERASURE_ADVICE = N_(
    "The broker has erased its copy. Erase this referral on your side as well, unless you are obliged "
    "to keep it (for example a duty to keep records)."
)
WITHDRAWAL_ADVICE = N_("Do not contact the patient because of this referral, and do not act on it.")


def consent_is_current(referral: LocalReferral) -> bool:
    from referral_protocol.consent import CONSENT_VERSION, consent_text_sha256

    return referral.consent.version == CONSENT_VERSION and referral.consent.text_sha256 == consent_text_sha256()


def _printable(text: str) -> str:
    """Line breaks as the PDF makes them, tabs as spaces, and no control character (`load` replaced them
    already; a clinic name or a notice's text passes here too)."""
    text = without_control_characters(text.replace("\r\n", "\n").replace("\r", "\n"), multiline=True)
    return text.replace("\t", "    ")


def _shown(field: str, value: str) -> str:
    return phone_shown(value) if field == "phone" else value


def _line(doc: FPDF, text: str, height: float, *, fill: bool = False) -> None:
    doc.multi_cell(0, height, _printable(text), fill=fill, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _section(doc: FPDF, title: str) -> None:
    doc.ln(4)
    doc.set_font(FONT, "B", 12)
    _line(doc, title, 7)
    doc.set_draw_color(180, 180, 180)
    doc.line(doc.l_margin, doc.get_y(), doc.w - doc.r_margin, doc.get_y())
    doc.ln(1.5)
    doc.set_font(FONT, "", 10)


def _pair(doc: FPDF, label: str, value: str) -> None:
    doc.set_font(FONT, "B", 10)
    doc.cell(48, 6, label)
    doc.set_font(FONT, "", 10)
    doc.multi_cell(0, 6, _printable(value), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def write(outdir: Path, referral: LocalReferral, texts: Texts, clinic_name: str) -> Path:
    path = pdf_path(outdir, referral.reference)
    durable.write_new_file(path, render(referral, texts, clinic_name))
    return path


def refresh(outdir: Path, texts: Texts, clinic_name: str, *, limit: int = PDFS_A_PULL) -> str:
    """Write the PDF of each referral that has none, or an older one than its newest file (at most `limit`);
    returns the first failure ('' when none), and leaves the others to the next pull."""
    failed = ""
    stale: list[tuple[int, str]] = []
    for reference, files in files_by_reference(outdir).items():
        newest = max(f.mtime_ns for f in files if f.name.endswith(".json") and not f.name.endswith(FHIR_SUFFIX))
        written = next((f for f in files if f.name == f"{reference}{PDF_SUFFIX}"), None)
        # strictly newer: where the clock ticks coarsely a PDF from the same tick as a notice is written again
        if written is None or written.mtime_ns <= newest:
            stale.append((newest, reference))
    # What changed last first, and a bounded number a pull: a folder of older referrals without PDFs (the
    # first start of the desk) is caught up over several pulls instead of holding up the first one.
    for _, reference in sorted(stale, reverse=True)[:limit]:
        try:
            write(outdir, load(outdir, reference), texts, clinic_name)
        except FileNotFoundError:
            continue  # deleted meanwhile
        except (OSError, ReferralUnreadable) as exc:
            failed = failed or f"{referral_file.path_for(outdir, reference).name}: {exc}"
    return failed
