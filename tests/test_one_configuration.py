"""One typed configuration (issue 23 item 3): the struct is the one place a setting is defined, it is read at the
top and passed down, and the table in docs/operations.md says what the struct says."""

from __future__ import annotations

from pathlib import Path

import pytest

import referral_broker
from devstack.configuration_doc import BEGIN, COMMAND, END, OPERATIONS_DOC, with_current_table
from referral_broker.services.environment import Variable, default_text, read_value, variables
from referral_broker.services.settings import ConfigError, Settings, with_secret_files

SETTINGS = variables(Settings)


def test_the_operations_guide_tables_every_setting_as_the_struct_defines_it() -> None:
    text = OPERATIONS_DOC.read_text()
    assert with_current_table(text) == text, (
        f"the configuration table in {OPERATIONS_DOC} differs from services/settings.py; run `{COMMAND}`"
    )


@pytest.mark.parametrize(
    ("stale", "fresh"),
    [
        ("| `REFERRAL_BROKER_MIN_AGE` | `16` |", "| `REFERRAL_BROKER_MIN_AGE` | `18` |"),  # a default
        ("a whole number, 0–120", "a whole number, 0–99"),  # a limit
        ("| `REFERRAL_BROKER_SUBMIT_RATE` |", "| `REFERRAL_BROKER_SUBMIT_LIMIT` |"),  # a variable's name
    ],
)
def test_a_table_that_no_longer_says_what_the_struct_says_is_rewritten(stale: str, fresh: str) -> None:
    text = OPERATIONS_DOC.read_text()
    assert stale in text
    edited = text.replace(stale, fresh)
    assert with_current_table(edited) != edited
    assert with_current_table(edited) == with_current_table(text)


def test_the_table_is_written_only_between_its_markers() -> None:
    with pytest.raises(ValueError, match="markers"):
        with_current_table("# Operations\n\nno table here\n")
    text = f"before\n{BEGIN}\nold rows\n{END}\nafter\n"
    written = with_current_table(text)
    assert written.startswith(f"before\n{BEGIN}\n") and written.endswith(f"{END}\nafter\n")
    assert "old rows" not in written and "`DATABASE_URL`" in written


def test_every_setting_names_its_own_variable_and_says_what_it_means() -> None:
    names = [v.name for v in SETTINGS]
    assert len(names) == len(set(names)), "two settings read the same variable"
    for v in SETTINGS:
        assert v.meaning, f"{v.field} has no description"
        # `NAME_FILE` supplies exactly these names (with_secret_files); a setting outside them could not be a secret
        assert v.name in ("DATABASE_URL", "REDIS_URL") or v.name.startswith("REFERRAL_BROKER_"), v.name


@pytest.mark.parametrize("v", [v for v in SETTINGS if default_text(v) is not None], ids=lambda v: v.name)
def test_each_documented_default_read_back_is_the_default_the_code_uses(v: Variable) -> None:
    text = default_text(v)
    assert text is not None
    assert read_value(v, text) == v.default
    assert getattr(Settings.from_env({"DATABASE_URL": "postgresql://x/y"}), v.field) == v.default


def test_a_setting_read_alone_is_read_as_in_the_whole() -> None:
    env = {"REFERRAL_BROKER_KEYS_DIR": "/srv/broker-keys"}
    assert str(Settings.one_from_env("keys_dir", env)) == "/srv/broker-keys"
    assert str(Settings.one_from_env("keys_dir", {})) == "keys"
    with pytest.raises(ConfigError, match="REFERRAL_BROKER_MIN_AGE must be between 0 and 120"):
        Settings.one_from_env("minimum_age", {"REFERRAL_BROKER_MIN_AGE": "121"})
    with pytest.raises(ConfigError, match="DATABASE_URL is not set"):
        Settings.one_from_env("database_url", with_secret_files({}))


def test_the_environment_is_read_at_the_top_and_the_settings_passed_down() -> None:
    """Only the command line reads the settings; no module below it reads the environment for itself."""
    product = Path(referral_broker.__file__).parent
    for module in sorted(product.rglob("*.py")):
        where = module.relative_to(product).as_posix()
        if where.startswith("clinic/"):
            continue  # the clinic's own program, with its own REFERRAL_CLINIC_* variables
        text = module.read_text()
        if where != "services/settings.py" and not where.startswith("cli/"):
            assert "from_env(" not in text, f"{where} reads the settings itself; take them as a parameter"
        if where not in ("services/settings.py", "cli/operations.py"):  # operations: a password for one command
            assert "os.environ" not in text and "getenv(" not in text, f"{where} reads the environment itself"
