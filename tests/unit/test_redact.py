"""No password reaches output: DSNs are shown redacted and known secrets are scrubbed."""

from __future__ import annotations

import secrets

from migctl.clients import Database, connection_kwargs
from migctl.redact import redact_dsn, redact_text, register_secret


def test_url_dsn_is_shown_with_password_masked() -> None:
    pw = secrets.token_urlsafe(12)
    assert (
        redact_dsn(f"postgresql://app:{pw}@src.example:5432/pay")
        == "postgresql://app:***@src.example:5432/pay"
    )


def test_keyword_dsn_is_shown_as_url_with_password_masked() -> None:
    pw = secrets.token_urlsafe(12)
    shown = redact_dsn(f"host=tgt port=5433 dbname=pay user=app password='{pw}'")
    assert shown == "postgresql://app:***@tgt:5433/pay"


def test_dsn_without_password_still_masks_nothing_it_does_not_have() -> None:
    assert redact_dsn("postgresql://127.0.0.1:5432/pay") == "postgresql://127.0.0.1:5432/pay"


def test_free_text_is_scrubbed_of_url_and_keyword_passwords() -> None:
    pw = secrets.token_urlsafe(12)
    text = f"could not connect: postgresql://u:{pw}@h/db and password={pw} there"
    out = redact_text(text)
    assert pw not in out
    assert "postgresql://u:***@h/db" in out and "password=***" in out


def test_registered_secret_is_scrubbed_anywhere() -> None:
    pw = secrets.token_urlsafe(16)
    register_secret(pw)
    assert redact_text(f"weird error {pw}!") == "weird error ***!"


def test_database_repr_and_str_hide_the_password() -> None:
    pw = secrets.token_urlsafe(12)
    db = Database(f"postgresql://app:{pw}@h:5432/pay", "source")
    assert pw not in repr(db) and pw not in str(db) and pw not in db.display


def test_parsing_a_dsn_registers_its_password_for_scrubbing() -> None:
    pw = secrets.token_urlsafe(12)
    connection_kwargs(f"host=db.example user=app password={pw} dbname=pay")
    assert pw not in redact_text(f"leaked {pw}")


def test_tls_is_required_off_loopback_unless_the_dsn_says_otherwise() -> None:
    assert connection_kwargs("host=db.example dbname=pay")["sslmode"] == "require"
    assert "sslmode" not in connection_kwargs("host=127.0.0.1 dbname=pay")
    assert "sslmode" not in connection_kwargs("host=localhost dbname=pay")
    assert connection_kwargs("host=db.example sslmode=verify-full")["sslmode"] == "verify-full"
    params = connection_kwargs("host=db.example dbname=pay")
    assert params["application_name"] == "migctl" and params["connect_timeout"] == 10
