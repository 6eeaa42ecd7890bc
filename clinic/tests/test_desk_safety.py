"""The desk's front door (security.md control 24): loopback only, a one-time link swapped for a cookie, the
Host checked, CSRF on every action, no framing and no script; referral text always escaped."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys

import httpx
import pytest

from broker_stand_in import CANARY_NAME, referral_payload
from clinic_folder import SLUG, Clinic
from desk_stand import DeskUnderTest, desk
from referral_clinic import folder_lock
from referral_clinic.cli import main
from referral_clinic.desk.server import DeskCannotStart, open_desk
from referral_protocol.referral import Need, Patient

__all__ = ["desk"]


def _other_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, the kernel only picks a route
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else str(address)


def test_the_desk_listens_on_loopback_only(desk: DeskUnderTest) -> None:
    host, port = desk.running.address
    assert host == "127.0.0.1"
    ss = shutil.which("ss")
    if ss:
        listening = subprocess.run([ss, "-ltnH"], capture_output=True, text=True, check=True).stdout
        ours = [line.split()[3] for line in listening.splitlines() if line.split()[3].endswith(f":{port}")]
        assert ours == [f"127.0.0.1:{port}"]
    other = _other_address()
    if other is not None:
        with pytest.raises(OSError), socket.create_connection((other, port), timeout=2):
            pass


def test_a_request_without_the_cookie_is_refused_and_shows_nothing_of_the_clinic(desk: DeskUnderTest) -> None:
    stranger = httpx.Client(base_url=desk.origin)
    for method, path in (("GET", "/"), ("GET", "/referral/RB-AAAAA-BBBBB"), ("POST", "/unlock"), ("POST", "/pull")):
        answer = stranger.request(method, path, data={"passphrase": "x"} if method == "POST" else None)
        assert answer.status_code == 401, (method, path)
        assert "Fjord" not in answer.text
    assert desk.running.front.session is None
    wrong_cookie = httpx.Client(base_url=desk.origin, cookies={desk.running.guard.cookie_name: "guess"})
    assert wrong_cookie.get("/").status_code == 401


def test_a_foreign_host_is_refused_even_with_the_cookie(desk: DeskUnderTest) -> None:
    client = desk.browser()
    assert client.get("/").status_code == 200
    port = desk.running.address[1]
    for host in (f"rebound.example:{port}", f"localhost:{port}", "127.0.0.1", f"127.0.0.1:{port + 1}"):
        answer = client.get("/", headers={"Host": host})
        assert answer.status_code == 400, host
        assert "Fjord" not in answer.text


def test_the_start_link_works_once_and_sets_a_strict_httponly_cookie(desk: DeskUnderTest) -> None:
    start = desk.running.guard.start_url.removeprefix(desk.origin)
    first = httpx.Client(base_url=desk.origin)
    answer = first.get(start)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert first.get("/").status_code == 200
    second = httpx.Client(base_url=desk.origin)
    assert second.get(start).status_code == 403
    assert second.get("/").status_code == 401
    assert httpx.get(f"{desk.origin}/start?token=guessed").status_code == 403


def test_an_action_without_the_csrf_token_or_from_another_origin_is_refused(desk: DeskUnderTest) -> None:
    client = desk.browser()
    assert client.post("/unlock", data={"passphrase": "correct horse battery staple"}).status_code == 403
    assert desk.running.front.session is None
    token = desk.csrf(client)
    foreign = {"Origin": "http://rebound.example"}
    refused = client.post("/unlock", data={"csrf": token, "passphrase": "x" * 12}, headers=foreign)
    assert refused.status_code == 403
    cross_site = client.post("/pull", data={"csrf": token}, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross_site.status_code == 403
    assert desk.unlock(client).status_code == 303
    referral = desk.clinic.serve()
    desk.pull()
    mark = client.post(f"/referral/{referral.reference}/mark", data={"state": "handled"})
    assert mark.status_code == 403
    assert "Ny" in client.get(f"/referral/{referral.reference}").text  # still new


def test_every_answer_forbids_framing_caching_and_inline_or_foreign_script(desk: DeskUnderTest) -> None:
    client = desk.browser()
    answers = [
        client.get("/"),
        client.get("/static/desk.css"),
        client.get("/no-such-page"),
        httpx.get(f"{desk.origin}/"),
        client.get("/", headers={"Host": "rebound.example"}),
    ]
    for answer in answers:
        csp = answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        assert "script-src 'self';" in csp and "unsafe" not in csp
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store"
    assert re.findall(r"<script[^>]*>", answers[0].text) in ([], ['<script src="/static/desk.js" defer>'])


def test_referral_text_is_escaped_everywhere_it_is_shown(desk: DeskUnderTest, clinic: Clinic) -> None:
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    payload = referral_payload(SLUG)
    payload = type(payload)(
        **{
            **{f: getattr(payload, f) for f in payload.__struct_fields__},
            "need": Need(description=f"vondt {hostile}", category="physiotherapy"),
            "patient": Patient(name=f"{CANARY_NAME} {hostile}", email="a@b.no", phone="+4741234567",
                               birth_date=payload.patient.birth_date),
        }
    )  # fmt: skip
    clinic.serve(payload)
    client = desk.browser()
    desk.unlock(client)
    desk.pull()
    where = f"/referral/{payload.reference}"
    pages = [client.get(p).text for p in ("/", where, f"{where}/print")]
    for page in pages:
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "<img" not in page and "alert(1)</script>" not in page
        assert re.findall(r"<script[^>]*>", page) in ([], ['<script src="/static/desk.js" defer>'])


def test_a_second_desk_on_the_same_folder_is_refused_with_a_clear_message(
    desk: DeskUnderTest, clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(DeskCannotStart, match="another desk is already open"):
        open_desk(clinic.dir, clinic.out, lang="nb")
    code = main(["desk", "--dir", str(clinic.dir), "--out", str(clinic.out), "--no-browser"])
    assert code == 1
    assert "another desk is already open" in capsys.readouterr().err
    missing = clinic.dir.parent / "no-such-clinic"
    assert main(["desk", "--dir", str(missing), "--out", str(clinic.out), "--no-browser"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_desk_and_a_watch_never_both_pull_for_one_folder(desk: DeskUnderTest, clinic: Clinic) -> None:
    with (
        pytest.raises(folder_lock.ClinicDirBusy, match="the desk already pulls"),
        folder_lock.hold_for_watching(clinic.dir),
    ):
        pass


def test_the_desk_is_refused_while_a_watch_pulls_for_the_folder(clinic: Clinic) -> None:
    with folder_lock.hold_for_watching(clinic.dir), pytest.raises(DeskCannotStart, match="watch"):
        open_desk(clinic.dir, clinic.out, lang="nb")


def test_the_desk_program_prints_its_one_time_link_serves_loopback_and_stops_on_sigterm(clinic: Clinic) -> None:
    program = subprocess.Popen(
        [sys.executable, "-m", "referral_clinic.cli", "desk", "--dir", str(clinic.dir), "--out",
         str(clinic.out), "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert program.stdout is not None
        link = ""
        for _ in range(2):
            line = program.stdout.readline()
            if "/start?token=" in line:
                link = line.rsplit(" ", 1)[-1].strip()
        assert link.startswith("http://127.0.0.1:"), link
        entered = httpx.get(link)
        assert entered.status_code == 303 and "SameSite=Strict" in entered.headers["set-cookie"]
        assert httpx.get(link).status_code == 403  # once only
        program.send_signal(signal.SIGTERM)
        assert program.wait(timeout=30) == 0
    finally:
        if program.poll() is None:
            program.kill()
            program.wait()
    again = open_desk(clinic.dir, clinic.out, lang="nb")  # the folder's desk lock was let go
    again.stop()
