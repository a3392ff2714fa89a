"""The web configuration `make up` writes for Prometheus, Alertmanager and the exporters, and
the header their clients send (stack/webauth.py)."""

from __future__ import annotations

import base64
from pathlib import Path

import bcrypt
import pytest
import yaml

from stack import webauth
from stack.settings import StackError

from .conftest import edit


def test_stage_and_prod_name_the_monitoring_user_with_a_bcrypt_hash() -> None:
    for env in ("stage", "prod"):
        users = yaml.safe_load(webauth.web_config(env, "s3cret-Value"))["basic_auth_users"]
        [(user, hashed)] = users.items()
        assert user == "monitoring" and hashed.startswith("$2b$10$")
        assert bcrypt.checkpw(b"s3cret-Value", hashed.encode())
        assert not bcrypt.checkpw(b"s3cret-Valu", hashed.encode())


def test_dev_asks_for_no_user() -> None:
    assert yaml.safe_load(webauth.web_config("dev", "anything")) is None


def test_a_password_bcrypt_would_cut_is_refused() -> None:
    with pytest.raises(StackError, match="MONITORING_PASSWORD is longer than 72 bytes"):
        webauth.web_config("prod", "x" * 73)


def test_an_unknown_mode_is_refused(repo_copy: Path) -> None:
    edit(repo_copy / "compose" / "env" / "prod.env", "MONITORING_AUTH=basic", "MONITORING_AUTH=on")
    with pytest.raises(StackError, match="MONITORING_AUTH='on'; use one of basic, none"):
        webauth.mode("prod", repo_copy)


def test_the_header_is_the_monitoring_user_and_its_password(tmp_path: Path) -> None:
    value = webauth.authorization("p:ss wörd")
    scheme, encoded = value.split(" ")
    assert (scheme, base64.b64decode(encoded).decode()) == ("Basic", "monitoring:p:ss wörd")
    assert webauth.headers(tmp_path) == {}
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "monitoring_authorization").write_text(value + "\n")
    assert webauth.headers(tmp_path) == {"Authorization": value}
