"""Finding 8: the API token that ``python -m assistant`` generates when none is configured is
written to a new file of a random name, created exclusively and never through a link; a file
or a symbolic link planted at the name the service used to choose (``assistant-api-token.<pid>``
in the temp directory) neither receives the token nor redirects it."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from assistant.config import Settings
from tests.security.conftest import Attack

AttackFn = Callable[[str, str], Attack]
NOBODY = 65534


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "run"
    directory.mkdir(mode=0o1777)
    directory.chmod(0o1777)  # like /tmp: anyone may create a name there
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(directory))
    return directory


def generate(caplog: pytest.LogCaptureFixture) -> tuple[str, Path]:
    """The token the service generates, and the file it says it wrote it to."""
    with caplog.at_level(logging.WARNING, logger="assistant"):
        token = Settings.from_env({}, generate_token=True).api_token
    message = next(r.getMessage() for r in caplog.records if "token is in" in r.getMessage())
    return token, Path(message.rsplit(" ", 1)[1])


def test_a_planted_symlink_does_not_redirect_the_token(
    runtime_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, attack: AttackFn
) -> None:
    a = attack("symlink planted at the token file's name", "the link's target untouched")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (runtime_dir / f"assistant-api-token.{os.getpid()}").symlink_to(victim)
    token, path = generate(caplog)
    a.happened = f"target now {victim.read_text()[:20]!r}, token in {path.name}"
    assert victim.read_text() == "precious\n"
    assert not path.is_symlink() and path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    a.blocked = True


def test_a_planted_readable_file_does_not_receive_the_token(
    runtime_dir: Path, caplog: pytest.LogCaptureFixture, attack: AttackFn
) -> None:
    a = attack("another user's 0666 file at the token file's name", "that file stays empty")
    planted = runtime_dir / f"assistant-api-token.{os.getpid()}"
    planted.touch(mode=0o666)
    planted.chmod(0o666)
    if os.geteuid() == 0:
        os.chown(planted, NOBODY, NOBODY)  # really another user's
    token, path = generate(caplog)
    a.happened = f"planted file holds {planted.read_text()[:12]!r}"
    assert planted.read_text() == "" and path != planted
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text().strip() == token
    a.blocked = True
