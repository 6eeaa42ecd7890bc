"""The broker knows each clinic by its organisation number and HER-id, from the clinic's signed enrolment
file: `clinic add` requires and stores them, `clinic list` and the dashboard show them, and clinics enrolled
before migration 0013 keep working with neither."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import msgspec
import pytest

from referral_broker.cli.broker import main
from referral_broker.crypto.broker_keys import init_keys
from referral_broker.store.migrate import apply_migrations
from referral_protocol.clinic_identity import ClinicSecrets, make_enrollment
from tests.conftest import Servers, migrated_up_to


def _operator(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path) -> None:
    init_keys(tmp_path / "keys")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REFERRAL_BROKER_KEYS_DIR", str(tmp_path / "keys"))


def _enrolment_file(tmp_path: Path, slug: str, **numbers: str) -> Path:
    path = tmp_path / f"{slug}.json"
    e = make_enrollment(ClinicSecrets.generate(slug), f"Klinikk {slug}", datetime.now(UTC), **numbers)
    path.write_bytes(msgspec.json.encode(e))
    return path


def test_clinic_add_stores_the_numbers_and_list_shows_them(
    clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _operator(monkeypatch, clean_db, tmp_path)
    with_her = _enrolment_file(tmp_path, "fysio", organisation_number="987654325", her_id="8765432")
    assert main(["clinic", "add", "--enrollment", str(with_her)]) == 0
    added = capsys.readouterr().out
    assert "organisation number: 987654325, HER-id: 8765432" in added
    without_her = _enrolment_file(tmp_path, "hud", organisation_number="998877660")
    assert main(["clinic", "add", "--enrollment", str(without_her)]) == 0
    capsys.readouterr()
    assert main(["clinic", "list", "--json"]) == 0
    listed = {c["slug"]: c for c in msgspec.json.decode(capsys.readouterr().out)}
    assert (listed["fysio"]["organisation_number"], listed["fysio"]["her_id"]) == ("987654325", "8765432")
    assert (listed["hud"]["organisation_number"], listed["hud"]["her_id"]) == ("998877660", None)
    assert main(["clinic", "list"]) == 0
    text = capsys.readouterr().out
    assert "(org.nr. 987654325, HER-id 8765432)" in text and "(org.nr. 998877660)" in text


@pytest.mark.parametrize(
    ("numbers", "message"),
    [
        ({}, "names no organisation number"),
        ({"organisation_number": "987654326"}, "check digit is wrong"),
    ],
)
def test_clinic_add_refuses_an_enrolment_without_a_valid_organisation_number(
    clean_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    numbers: dict[str, str],
    message: str,
) -> None:
    _operator(monkeypatch, clean_db, tmp_path)
    assert main(["clinic", "add", "--enrollment", str(_enrolment_file(tmp_path, "ny", **numbers))]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert main(["clinic", "list", "--json"]) == 0
    assert msgspec.json.decode(capsys.readouterr().out) == []


async def test_clinics_enrolled_before_the_migration_keep_working_with_no_numbers(
    servers: Servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with migrated_up_to(servers, monkeypatch, lambda file: file < "0013") as (_, conn):
        await conn.execute("INSERT INTO clinics (id, slug, name) VALUES ($1, 'gammel', 'Gammel klinikk')", uuid.uuid4())
        assert "0013_clinic_organisation.sql" in await apply_migrations(conn)
        row = await conn.fetchrow("SELECT slug, organisation_number, her_id FROM clinics")
        assert dict(row) == {"slug": "gammel", "organisation_number": None, "her_id": None}
        for column, value in (("organisation_number", "98765432"), ("her_id", "0123")):
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute(f"UPDATE clinics SET {column} = $1", value)  # noqa: S608 - fixed names
