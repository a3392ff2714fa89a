"""Images for the local engine, without a registry (`make images`): a Debian base made with
debootstrap from the machine's own mirror, then one Containerfile per component in images/
(Debian's packages), the sample service from wheels built on the host, and the wrappers
(redis_exporter's, VictoriaMetrics') from their real Dockerfiles over the local images. Each
image carries a label with the hash of what it is built from; an image whose hash matches is not
rebuilt."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import ROOT
from .engine import podman_env
from .services import RECORDS, local_images
from .settings import StackError

BASE = "localhost/stack-debian:bookworm"
SUITE = "bookworm"
LABEL = "stack.source"
SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
# Compose names of the images Compose would otherwise build (compose.yaml, STACK_VERSION unset)
ASSISTANT = "localhost/assistant:local"
REDIS_EXPORTER_WRAPPER = "localhost/redis-exporter:local"
VICTORIAMETRICS_WRAPPER = "localhost/victoriametrics:local"
# the images Compose builds over pinned ones: name -> (tag, build context, the image variables
# it takes as build arguments, the first one its parent)
WRAPPERS = {
    "redis-exporter-wrapper": (REDIS_EXPORTER_WRAPPER, "exporters/redis",
                               ("REDIS_EXPORTER_IMAGE", "PYTHON_IMAGE")),
    "victoriametrics-wrapper": (VICTORIAMETRICS_WRAPPER, "victoriametrics",
                                ("VICTORIAMETRICS_IMAGE",)),
}  # fmt: skip
# the wheels are resolved by the interpreter the image runs (Debian's 3.11.2: markers differ
# from the venv's 3.11.x, e.g. redis needs async-timeout below 3.11.3)
DEBIAN_PYTHON = "/usr/bin/python3"
# what the sample service's image is made of: app_metrics (pyproject.toml, the only published
# project), the service's code and requirements (assistant/), the versions CI tests
ASSISTANT_SOURCES = [
    "pyproject.toml",
    "requirements/dev.lock",
    "app_metrics",
    "assistant",
]


@dataclass
class Image:
    name: str  # images/<name>, or a label for the special builds
    tag: str
    parent: str | None


def plan() -> list[Image]:
    """Every image, parents first."""
    tags = local_images()
    by_folder = {_folder(tag): tag for tag in tags.values()}
    out = [Image("base", BASE, None), Image("python", tags["PYTHON_IMAGE"], BASE)]
    out += [Image(f, t, BASE) for f, t in sorted(by_folder.items()) if f != "python"]
    out.append(Image("assistant", ASSISTANT, tags["PYTHON_IMAGE"]))
    out += [Image(name, tag, tags[args[0]]) for name, (tag, _, args) in WRAPPERS.items()]
    return out


def _folder(tag: str) -> str:
    match = re.fullmatch(r"localhost/stack-([a-z-]+):\w+", tag)
    if match is None or not (ROOT / "images" / match[1] / "Containerfile").is_file():
        raise StackError(f"{RECORDS.name}: {tag} has no images/<name>/Containerfile")
    return match[1]


# ---- hashing -----------------------------------------------------------------------------


def _digest(paths: list[Path], *extra: str) -> str:
    h = hashlib.sha256("\0".join(extra).encode())
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if "__pycache__" in f.parts:
                continue
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def source_hash(image: Image, parents: dict[str, str]) -> str:
    parent = parents.get(image.parent or "", "")
    if image.name == "base":
        return _digest([], SUITE, mirror(), "minbase", "policy-rc.d")
    if image.name == "assistant":
        return _digest(
            [ROOT / p for p in ASSISTANT_SOURCES] + [ROOT / "images" / "assistant"], parent
        )
    if image.name in WRAPPERS:
        _, context, variables = WRAPPERS[image.name]
        tags = local_images()
        return _digest([ROOT / context], *(parents.get(tags[v], "") for v in variables))
    return _digest([ROOT / "images" / image.name], parent)


def built_hash(tag: str) -> str | None:
    done = _podman("image", "inspect", "--format", f'{{{{index .Labels "{LABEL}"}}}}', tag)
    return done.stdout.strip() or None if done.returncode == 0 else None


# ---- building ----------------------------------------------------------------------------


def _podman(*args: str, input_file=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], stdin=input_file, capture_output=True, text=True,
        env=podman_env(), check=False,
    )  # fmt: skip


def _run(command: list[str], what: str, **kw) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False, **kw)
    if done.returncode != 0:
        raise StackError(f"{what} failed:\n{(done.stdout + done.stderr)[-3000:]}")


def mirror(sources: Path = SOURCES, legacy: Path = Path("/etc/apt/sources.list")) -> str:
    """The machine's Debian mirror: the main bookworm entry of its apt sources."""
    if sources.is_file():
        for stanza in sources.read_text().split("\n\n"):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.+)$", stanza, re.M))
            if SUITE in fields.get("Suites", "").split():
                return fields["URIs"].split()[0]
    if legacy.is_file():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if parts[:1] == ["deb"] and SUITE in parts:
                return next(p for p in parts[1:] if p.startswith(("http", "file")))
    raise StackError(f"no Debian {SUITE} mirror in {sources} or {legacy}")


def _build_base(label: str) -> None:
    with tempfile.TemporaryDirectory(prefix="stack-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror()], "debootstrap")
        policy = rootfs / "usr" / "sbin" / "policy-rc.d"  # packages must not start daemons
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        shutil.rmtree(rootfs / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        (rootfs / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        done = _podman(
            "import", "--change", f"LABEL {LABEL}={label}", "-", BASE, input_file=tar.stdout
        )
        tar.wait()
        if done.returncode != 0 or tar.returncode != 0:
            raise StackError(f"podman import failed:\n{done.stderr}")


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(source, target, ignore=ignore)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)


def _build(image: Image, label: str) -> None:
    if image.name == "base":
        _build_base(label)
        return
    args = ["build", "--quiet", "--label", f"{LABEL}={label}", "--tag", image.tag]
    if image.name == "assistant":
        with tempfile.TemporaryDirectory(prefix="stack-assistant-") as tmp:
            context = Path(tmp)
            shutil.copy(ROOT / "images" / "assistant" / "Containerfile", context)
            # a clean copy: the wheel is built from it (a checkout's stale build/ would leak
            # into the wheel), and the Containerfile copies the service's code from it
            for source in ASSISTANT_SOURCES:
                _copy(ROOT / source, context / source)
            _run(
                [DEBIAN_PYTHON, "-m", "pip", "wheel", "--quiet", "--wheel-dir", "wheels",
                 "--constraint", "requirements/dev.lock",
                 ".", "--requirement", "assistant/requirements.txt"],
                "pip wheel (app_metrics and the sample service's requirements)", cwd=context,
            )  # fmt: skip
            done = _podman(*args, tmp)
    elif image.name in WRAPPERS:
        _, context, variables = WRAPPERS[image.name]
        tags = local_images()
        build_args = [a for v in variables for a in ("--build-arg", f"{v}={tags[v]}")]
        done = _podman(*args, *build_args, str(ROOT / context))
    else:
        done = _podman(*args, str(ROOT / "images" / image.name))
    if done.returncode != 0:
        raise StackError(f"building {image.tag} failed:\n{done.stderr[-3000:]}")


def build(say=print, only: set[str] | None = None) -> int:
    """Build what is missing or stale, parents first, with a line per image; ``only``: these
    images (by name) and nothing else, e.g. {"base"} for the acceptance check's bare machine."""
    images = [i for i in plan() if only is None or i.name in only]
    labels: dict[str, str] = {}
    started = time.monotonic()
    built = 0
    for number, image in enumerate(images, 1):
        label = labels[image.tag] = source_hash(image, labels)
        prefix = f"[{number}/{len(images)}] {image.tag}"
        if built_hash(image.tag) == label:
            say(f"{prefix}: up to date")
            continue
        say(f"{prefix}: building ({image.name})", flush=True)
        begun = time.monotonic()
        _build(image, label)
        built += 1
        say(f"{prefix}: built in {time.monotonic() - begun:.1f} s")
    elapsed = time.monotonic() - started
    say(f"images: {built} built, {len(images) - built} up to date, {elapsed:.1f} s")
    return built
