"""The files of a multiprocess directory: which ones app_metrics touches, and how.

prometheus_client gives each process its own files, ``<kind>_<pid>.db`` (``counter``,
``histogram``, ``summary``, ``gauge_<mode>``). app_metrics adds ``.app_metrics_lock``
(``flock``: exclusive while the directory is prepared or folded, shared while a scrape
reads it), ``.app_metrics_run`` (whose run the files belong to), ``<kind>_merged.db`` (the
counts of workers that are gone) and, while a fold runs, ``.app_metrics_fold.json`` and a
``.app_metrics_fold.*`` directory. Nothing else in the directory is read, written or
removed, a file of another user is left alone, and a symbolic link is never followed
(``O_NOFOLLOW``; ``lstat`` before anything is read or removed).

**Folding** keeps the directory bounded when workers come and go (gunicorn
``--max-requests``, crashes): the files of a dead worker are folded, counts into one
``<kind>_merged.db`` per kind (summed per series) and gauges dropped (a dead worker has no
current value). A fold never changes what a scrape adds up, and survives a crash at any
point: the new merged files are written in a private directory, a journal naming the folded
files is written, the merged files are renamed into place, then the folded files and the
journal are removed. A merged file still in the private directory means it was not renamed
(its files were not folded: they stay); one gone from it means it was (its files go). All of
it happens under the exclusive lock, which scrapes wait for, so no scrape sees a count twice
or not at all.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import stat
import struct
import tempfile
from collections.abc import Iterator, Sequence

from prometheus_client.mmap_dict import MmapedDict

log = logging.getLogger("app_metrics")

LOCK = ".app_metrics_lock"
MARKER = ".app_metrics_run"
JOURNAL = ".app_metrics_fold.json"
WORK_PREFIX = ".app_metrics_fold."
FOLDED_KINDS = ("counter", "histogram", "summary")
PROCESS_FILE = re.compile(
    r"^(counter|histogram|summary|gauge_(?:live)?(?:all|min|max|sum|mostrecent))_(\d+)\.db$"
)
MERGED_FILE = re.compile(r"^(counter|histogram|summary)_merged\.db$")

Totals = dict[str, tuple[float, float]]  # series key -> (value, timestamp)


def merged_name(kind: str) -> str:
    return f"{kind}_merged.db"


def open_nofollow(path: str, flags: int, mode: int = 0o600) -> int:
    """``os.open`` that refuses a symbolic link with an error saying so."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RuntimeError(
                f"{path} is a symbolic link: app_metrics never follows one in the multiprocess"
                " directory (someone else can write there?); remove it"
            ) from None
        raise


def read_text(path: str) -> str | None:
    try:
        descriptor = open_nofollow(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    with os.fdopen(descriptor) as f:
        return f.read(4096)


def write_text(path: str, text: str) -> None:
    descriptor = open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(descriptor, "w") as f:
        f.write(text)


def own_file(path: str) -> bool:
    """A regular file (not a link) of this user."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()


def process_files(directory: str) -> list[tuple[str, str, int]]:
    """(name, kind, pid) of every prometheus_client file of this user in ``directory``."""
    found = []
    for name in os.listdir(directory):
        m = PROCESS_FILE.match(name)
        if m is not None and own_file(os.path.join(directory, name)):
            found.append((name, m.group(1), int(m.group(2))))
    return found


def readable_files(directory: str) -> list[str]:
    """What a scrape adds up: the processes' files and the merged ones (no link, nothing of
    another user, nothing still being created: under 8 bytes)."""
    paths = []
    for name in os.listdir(directory):
        if PROCESS_FILE.match(name) or MERGED_FILE.match(name):
            path = os.path.join(directory, name)
            with contextlib.suppress(FileNotFoundError):
                if own_file(path) and os.path.getsize(path) >= 8:
                    paths.append(path)
    return paths


def entries(path: str) -> Iterator[tuple[str, float, float]]:
    """(key, value, timestamp) of a prometheus_client file (the format documented in
    ``MmapedDict``), read without following a link."""
    with os.fdopen(open_nofollow(path, os.O_RDONLY), "rb") as f:
        data = f.read()
    if len(data) < 8:
        return
    used = min(struct.unpack_from("i", data, 0)[0], len(data))
    pos = 8
    while pos < used:
        (length,) = struct.unpack_from("i", data, pos)
        key_end = pos + 4 + length
        pos = key_end + (8 - (length + 4) % 8)
        if pos + 16 > used:
            raise ValueError(f"{path} is corrupt at byte {pos}")
        value, timestamp = struct.unpack_from("dd", data, pos)
        yield data[key_end - length : key_end].decode("utf-8"), value, timestamp
        pos += 16


def remove(directory: str, name: str) -> None:
    path = os.path.join(directory, name)
    if own_file(path):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def fold(directory: str, dead: Sequence[tuple[str, str]]) -> None:
    """Fold the files of processes that are gone, given as (name, kind). The caller holds
    the lock exclusively (see the module docstring)."""
    folding: dict[str, list[str]] = {}
    totals: dict[str, Totals] = {}
    for kind in FOLDED_KINDS:
        names = [name for name, k in dead if k == kind]
        if not names:
            continue
        try:
            totals[kind] = _merged_totals(directory, kind)
            for name in names:
                for key, value, timestamp in entries(os.path.join(directory, name)):
                    known = totals[kind].get(key, (0.0, 0.0))
                    totals[kind][key] = (known[0] + value, max(known[1], timestamp))
        except (OSError, ValueError, struct.error) as exc:
            log.warning("multiprocess %s files left as they are: %s", kind, exc)
            continue
        folding[kind] = names
    for name, kind in dead:
        if kind.startswith("gauge"):
            remove(directory, name)
    if not folding:
        return
    work = tempfile.mkdtemp(prefix=WORK_PREFIX, dir=directory)
    for kind in folding:
        _write_merged(os.path.join(work, merged_name(kind)), totals[kind])
    journal = {"work": os.path.basename(work), "folded": folding}
    staged = os.path.join(work, "journal")
    write_text(staged, json.dumps(journal))
    _fsync(staged)
    os.replace(staged, os.path.join(directory, JOURNAL))
    for kind in folding:
        os.replace(
            os.path.join(work, merged_name(kind)), os.path.join(directory, merged_name(kind))
        )
    _fsync(directory)
    recover(directory)  # removes the folded files, the journal and the private directory


def recover(directory: str) -> None:
    """Finish, or forget, a fold that a crash interrupted (see the module docstring); remove
    what is left of earlier ones. The caller holds the lock exclusively."""
    raw = read_text(os.path.join(directory, JOURNAL))
    if raw is not None:
        journal = json.loads(raw)
        work = str(journal.get("work", ""))
        for kind, names in dict(journal.get("folded", {})).items():
            if kind not in FOLDED_KINDS or not work.startswith(WORK_PREFIX) or "/" in work:
                continue
            if os.path.lexists(os.path.join(directory, work, merged_name(kind))):
                continue  # not renamed into place: its files were not folded
            for name in names:
                m = PROCESS_FILE.match(str(name))
                if m is not None and m.group(1) == kind:
                    remove(directory, name)
        _fsync(directory)
        remove(directory, JOURNAL)
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.startswith(WORK_PREFIX) and name != JOURNAL:
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
                shutil.rmtree(path, ignore_errors=True)


def _merged_totals(directory: str, kind: str) -> Totals:
    path = os.path.join(directory, merged_name(kind))
    if not own_file(path):
        return {}
    return {key: (value, timestamp) for key, value, timestamp in entries(path)}


def _write_merged(path: str, totals: Totals) -> None:
    os.close(open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    merged = MmapedDict(path)
    try:
        for key, (value, timestamp) in totals.items():
            merged.write_value(key, value, timestamp)
    finally:
        merged.close()
    _fsync(path)


def _fsync(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
