"""The operator's command line and start-up checks: clear refusals, nothing overwritten, safe to repeat."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import msgspec
import pytest

from referral_broker.cli.broker import main
from referral_broker.crypto.broker_keys import init_keys
from referral_broker.services.settings import ConfigError, Settings
from referral_broker.store.migrate import apply_migrations, migration_files
from referral_protocol.clinic_identity import ClinicSecrets, make_enrollment
from tests.conftest import Servers


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://x/y", "REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"DATABASE_URL": "postgresql://x/y", "REFERRAL_BROKER_MIN_AGE": "sixteen"}, "REFERRAL_BROKER_MIN_AGE"),
        ({"DATABASE_URL": "postgresql://x/y", "REFERRAL_BROKER_MIN_AGE": "200"}, "REFERRAL_BROKER_MIN_AGE"),
        (
            {"DATABASE_URL": "postgresql://x/y", "REFERRAL_BROKER_WORKER_POLL_DELAY": "x"},
            "REFERRAL_BROKER_WORKER_POLL_DELAY",
        ),
    ],
)
def test_wrong_configuration_names_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


def test_missing_database_url_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("referral-broker: DATABASE_URL") and "Traceback" not in err


def test_keys_init_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "init", "--dir", str(tmp_path)]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert (tmp_path / "broker-signing.key").stat().st_mode & 0o777 == 0o600
    assert main(["keys", "init", "--dir", str(tmp_path)]) == 0
    assert "nothing was changed" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_keys_init_needs_only_the_keys_folder_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`docker run -e REFERRAL_BROKER_KEYS_DIR=/keys … keys init` (docs/operations.md): no database URL needed."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("REFERRAL_BROKER_KEYS_DIR", str(tmp_path / "from-env"))
    assert main(["keys", "init"]) == 0
    assert (tmp_path / "from-env" / "broker.pub").exists()
    assert str(tmp_path / "from-env") in capsys.readouterr().out


async def test_migrations_are_safe_to_repeat_and_to_run_concurrently(servers: Servers) -> None:
    admin = await asyncpg.connect(servers.postgres_url)
    await admin.execute('CREATE DATABASE "rb_migrate_race"')
    url = servers.postgres_url.rsplit("/", 1)[0] + "/rb_migrate_race"
    try:
        conns = [await asyncpg.connect(url) for _ in range(3)]
        results = await asyncio.gather(*(apply_migrations(c) for c in conns))
        everything = [name for name, _ in migration_files()]
        # The advisory lock lets one runner apply everything; the others wait and find nothing to do.
        assert sorted(results, key=len) == [[], [], everything]
        assert await apply_migrations(conns[0]) == []
        for c in conns:
            await c.close()
    finally:
        await admin.execute('DROP DATABASE "rb_migrate_race" WITH (FORCE)')
        await admin.close()


def _operator_env(monkeypatch: pytest.MonkeyPatch, database_url: str, keys: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REFERRAL_BROKER_KEYS_DIR", str(keys))


def test_enrolment_with_a_wrong_fingerprint_is_refused_and_keys_stay_pending(
    clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    init_keys(tmp_path / "keys")
    _operator_env(monkeypatch, clean_db, tmp_path / "keys")
    secrets_ = ClinicSecrets.generate("ny-klinikk")
    enrollment = tmp_path / "enrollment.json"
    enrollment.write_bytes(
        msgspec.json.encode(make_enrollment(secrets_, "Ny klinikk", datetime.now(UTC), organisation_number="987654325"))
    )
    assert main(["clinic", "add", "--enrollment", str(enrollment), "--categories", "physiotherapy"]) == 0
    assert main(["clinic", "add", "--enrollment", str(enrollment)]) == 2  # enrolled once only
    assert "already enrolled" in capsys.readouterr().err
    assert main(["clinic", "verify", "ny-klinikk", "--fingerprint", "AAAA-BBBB"]) == 2
    assert "does not match" in capsys.readouterr().err
    assert main(["clinic", "list", "--json"]) == 0
    listed = msgspec.json.decode(capsys.readouterr().out)
    assert listed[0]["status"] == "pending" and {k["state"] for k in listed[0]["keys"]} == {"pending"}
    assert main(["clinic", "verify", "no-such", "--fingerprint", listed[0]["fingerprint"]]) == 2
    assert main(["clinic", "verify", "ny-klinikk", "--fingerprint", listed[0]["fingerprint"]]) == 0
    assert main(["clinic", "verify", "ny-klinikk", "--fingerprint", listed[0]["fingerprint"]]) == 2  # nothing pending


def test_a_tampered_enrolment_file_is_refused(
    clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    init_keys(tmp_path / "keys")
    _operator_env(monkeypatch, clean_db, tmp_path / "keys")
    e = make_enrollment(ClinicSecrets.generate("a"), "A", datetime.now(UTC), organisation_number="987654325")
    forged = msgspec.structs.replace(e, name="Someone else")
    path = tmp_path / "enrollment.json"
    path.write_bytes(msgspec.json.encode(forged))
    assert main(["clinic", "add", "--enrollment", str(path)]) == 2
    assert "altered" in capsys.readouterr().err
    assert main(["clinic", "add", "--enrollment", str(tmp_path / "missing.json")]) == 2


def test_secrets_can_come_from_files(tmp_path: Path) -> None:
    secret = tmp_path / "database_url"
    secret.write_text("postgresql://broker:s3cret@db/referral_broker\n")
    assert Settings.from_env({"DATABASE_URL_FILE": str(secret)}).database_url.endswith("@db/referral_broker")
    with pytest.raises(ConfigError, match="DATABASE_URL_FILE"):
        Settings.from_env({"DATABASE_URL_FILE": str(tmp_path / "missing")})


def test_other_programs_file_variables_are_ignored(tmp_path: Path) -> None:
    settings = Settings.from_env({"DATABASE_URL": "postgresql://x/y", "TF_CLI_CONFIG_FILE": str(tmp_path / "none")})
    assert settings.database_url == "postgresql://x/y"
