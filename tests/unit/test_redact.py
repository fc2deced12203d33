"""No password reaches output: DSNs are shown redacted and known secrets are scrubbed."""

from __future__ import annotations

import secrets
from typing import Any

from migctl.db import Database, connection_kwargs
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


def malformed(pw: str) -> list[str]:
    """DSNs libpq refuses or misreads, each holding the password ``pw``."""
    return [
        f"postgresql://app:{pw}%ZZ@db.example:5432/pay",  # a %-escape that is not hex
        f"host=db.example user=app password={pw} x",  # a space in an unquoted value
        f"host=db.example user=app password{pw}",  # '=' missing
        f"host=db.example password='{pw}",  # an unterminated quote
        f"postgresql://app:{pw}@[::1:5432/pay",  # IPv6 without its ']'
        f"postgresql://app:{pw}@db.example:port/pay",  # a port that is not a number
        f"host=db.example port=abc password={pw}",
        f"postgresql://app:{pw}@extra@db.example/pay",  # an unencoded @
        f"mysql://app:{pw}@db.example/pay",  # not PostgreSQL
        f"host=db.example user=app passwrd={pw}",  # an unknown keyword
    ]


def test_a_malformed_dsn_is_a_config_error_that_shows_no_part_of_the_password() -> None:
    import pytest

    from migctl.errors import ConfigError

    pw = "Pw" + secrets.token_hex(8)
    for dsn in malformed(pw):
        with pytest.raises(ConfigError) as caught:
            connection_kwargs(dsn)
        message = caught.value.one_line()
        assert message.startswith("bad DSN"), (dsn, message)
        assert pw[:6] not in message and pw[-6:] not in message, (dsn, message)
        assert caught.value.exit_code == 2


def test_a_hash_in_a_url_password_is_a_password() -> None:
    pw = "p#" + secrets.token_hex(6)
    dsn = f"postgresql://app:{pw}@db.example:5432/pay"
    assert redact_dsn(dsn) == "postgresql://app:***@db.example:5432/pay"
    assert connection_kwargs(dsn)["password"] == pw


def test_redact_dsn_never_raises_and_never_shows_the_password() -> None:
    pw = "Pw" + secrets.token_hex(8)
    for dsn in [*malformed(pw), f"postgresql://app:{pw}#frag@h:99999999999/db", "://", "x" * 5]:
        shown = redact_dsn(dsn)
        assert pw not in shown and pw[:6] not in shown, (dsn, shown)
    assert redact_dsn("mysql://u:x@h/db").startswith("mysql://")  # the scheme is not rewritten


def test_botocore_bodies_are_never_logged(caplog: Any) -> None:
    import logging

    from migctl.redact import hide_http_bodies

    hide_http_bodies()
    pw = secrets.token_hex(8)
    body = ('{"SecretString": "{\\"password\\": \\"' + pw + '\\"}"}').encode()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("botocore.parsers").debug("Response body:\n%r", body)
        logging.getLogger("botocore.endpoint").debug(
            "Making request for %s with params: %s", "op", {"body": body, "url": "https://x"}
        )
        logging.getLogger("botocore.endpoint").debug(
            "Making request for %s with params: %s", "op", {"body": {"Password": pw}}
        )
    text = caplog.text
    assert pw not in text and "not logged" in text and "https://x" in text
