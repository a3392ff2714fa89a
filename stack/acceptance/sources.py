"""The host's package sources (apt and pip configuration, the files and folders they name, the
PIP_* and proxy variables), to give the bare machine the same ones. No host name is written
here."""

from __future__ import annotations

import configparser
import io
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

APT_FILES = ("/etc/apt/sources.list", "/etc/apt/sources.list.d", "/etc/apt/apt.conf.d",
             "/etc/apt/preferences.d", "/etc/apt/trusted.gpg.d", "/etc/apt/keyrings")  # fmt: skip
PIP_CONFIGS = ("/etc/pip.conf", "/etc/xdg/pip/pip.conf", "~/.config/pip/pip.conf",
               "~/.pip/pip.conf")  # fmt: skip
PIP_PATH_KEYS = ("cert", "client-cert", "constraint", "find-links", "index-url",
                 "extra-index-url", "requirement")  # fmt: skip
CA_DIRS = ("/usr/local/share/ca-certificates",)


def _paths_in(value: str) -> Iterator[Path]:
    for token in value.split():
        token = token.removeprefix("file://")
        if token.startswith("/"):
            yield Path(token)


@dataclass
class Sources:
    files: dict[str, Path] = field(default_factory=dict)  # path in the container -> host file
    mounts: set[Path] = field(default_factory=set)  # host directories, mounted read-only
    env: dict[str, str] = field(default_factory=dict)

    def add(self, path: Path, inside: str | None = None) -> None:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file():
                    self.files[str(child)] = child
        elif path.is_file():
            self.files[inside or str(path)] = path

    def add_referenced(self, path: Path) -> None:
        if path.is_dir():  # package indexes and wheel folders: large, read-only
            # a PEP 503 index's pages link to ../../files/: its parent goes in whole
            self.mounts.add(path.parent if path.name == "simple" else path)
        else:
            self.add(path)


def host_sources() -> Sources:
    """The host's apt and pip configuration and what it names: copied files, mounted folders,
    PIP_* and proxy variables."""
    found = Sources()
    for name in APT_FILES:
        found.add(Path(name))
    for text in (p.read_text(errors="replace") for p in list(found.files.values())):
        for keyring in re.findall(r"(?:Signed-By:|signed-by=)\s*(/\S+?)[\]\s]", text + "\n"):
            found.add(Path(keyring))
    for name in PIP_CONFIGS:
        path = Path(name).expanduser()
        if not path.is_file():
            continue
        inside = name.replace("~", "/root")
        found.add(path, inside)
        config = configparser.ConfigParser(interpolation=None)
        config.read(path)
        for section in config.sections():
            for key, value in config[section].items():
                if key in PIP_PATH_KEYS:
                    for referenced in _paths_in(value):
                        found.add_referenced(referenced)
    for key, value in os.environ.items():
        if key.startswith("PIP_") or key.lower() in ("http_proxy", "https_proxy", "no_proxy"):
            found.env[key] = value
            if key.startswith("PIP_"):
                for referenced in _paths_in(value):
                    found.add_referenced(referenced)
    for name in CA_DIRS:
        found.add(Path(name))
    return found


def tar_of(files: dict[str, Path]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for inside, path in sorted(files.items()):
            tar.add(path, arcname=inside.lstrip("/"), recursive=False)
    return buffer.getvalue()
