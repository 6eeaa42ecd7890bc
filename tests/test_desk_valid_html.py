"""Every page of the clinic's desk is valid HTML, by the same checker as the broker's pages (it lives with the
broker's tests: Java and the Nu Html Checker are no part of the clinic's own test run)."""

from __future__ import annotations

from pathlib import Path

import httpx

from clinic_folder import clinic, clinic_env
from desk_stand import DeskUnderTest, desk
from referral_protocol.notice import NoticeKind
from test_notices import notice_for, serve_notice
from tests.patient_web.test_valid_html import html_errors

__all__ = ["clinic", "clinic_env", "desk"]


def test_every_desk_page_is_valid_html(desk: DeskUnderTest, tmp_path: Path) -> None:
    pages = tmp_path / "pages"  # tmp_path also holds the clinic's folders
    pages.mkdir()

    def keep(name: str, answer: httpx.Response, status: int) -> None:
        assert answer.status_code == status, name
        (pages / f"{name}.html").write_text(answer.text, encoding="utf-8")

    client = desk.browser()
    keep("unlock", client.get("/"), 200)
    keep("wrong-passphrase", client.post("/unlock", data={"csrf": desk.csrf(client), "passphrase": "x" * 12}), 422)
    desk.unlock(client)
    referral = desk.clinic.serve()
    desk.pull()
    keep("inbox-new", client.get("/"), 200)
    serve_notice(desk.clinic, notice_for(referral, NoticeKind.CORRECTION))
    serve_notice(desk.clinic, notice_for(referral, NoticeKind.WITHDRAWAL))
    desk.pull()
    where = f"/referral/{referral.reference}"
    for name, path in (("inbox", "/"), ("no-match", "/?q=zzz"), ("referral", where), ("print", f"{where}/print")):
        keep(name, client.get(path), 200)
    keep("delete", client.get(f"{where}/delete"), 200)
    keep("not-found", client.get("/nothing"), 404)
    keep("no-cookie", httpx.get(f"{desk.origin}/"), 401)
    keep("foreign-host", client.get("/", headers={"Host": "rebound.example"}), 400)
    assert html_errors(pages) == []
