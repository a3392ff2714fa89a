"""Who the native components run as, and what of this machine they may reach.

As root, every component but PostgreSQL (which runs as ``postgres``) runs as one unprivileged
system user, ``pa-monitoring``, made on first use (``useradd --system``, no home, no shell);
as another user, they run as that user. The account reads the checkout (the code, .venv, the
rules and templates) and its environment's run directory (secrets, configuration; group
``pa-monitoring``, closed to others), and writes only its components' data directories (its
own, 0700). Logs are root's: each is opened by `make up` and handed to its process as its
output, so the account can append to its log but not read or replace it.

A checkout under /root (0700 on Debian) cannot be reached by any other user. Rather than open
/root, `make up` opens each tree the account needs but cannot reach (the checkout, a run root
elsewhere, the Python interpreter's prefix) and hands the components that directory, as an
open descriptor, at ``/proc/self/fd/<n>``: the kernel resolves that link to the directory
itself, so the components reach what is below it (when others may read it) and nothing else
of /root. A tree that is itself closed to others is refused, naming it and the fix.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .native_config import unreachable_by_others
from .settings import StackError

USER = "pa-monitoring"


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int

    @property
    def switches(self) -> bool:
        """True when the components run as this account rather than as the caller."""
        return self.uid != os.geteuid()


def account() -> Account:
    """As root: ``pa-monitoring``, made when missing (with its own group); otherwise the
    caller, whose components run as themselves."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return Account(me.pw_name, me.pw_uid, os.getegid())
    try:
        found = pwd.getpwnam(USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        done = subprocess.run(
            [useradd, "--system", "--user-group", "--no-create-home", "--home-dir",
             "/nonexistent", "--shell", "/usr/sbin/nologin", "--comment",
             "personal-assistant monitoring (native runtime)", USER],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise StackError(f"useradd {USER} failed: {done.stderr.strip()}") from None
        print(f"made the system user {USER}: every native component but PostgreSQL runs as it")
        found = pwd.getpwnam(USER)
    if found.pw_uid == 0:
        raise StackError(f"user {USER} has uid 0: it must be an unprivileged account")
    return Account(found.pw_name, found.pw_uid, found.pw_gid)


def group_name(who: Account) -> str:
    return grp.getgrgid(who.gid).gr_name


# ---- modes and owners ---------------------------------------------------------------------


def share(path: Path, who: Account, mode: int) -> None:
    """``path`` root's (the caller's) with ``who``'s group, ``mode`` (0750, 0640)."""
    if who.switches:
        os.chown(path, os.geteuid(), who.gid, follow_symlinks=False)
    path.chmod(mode)


def own(directory: Path, who: Account) -> None:
    """``directory`` and everything below it ``who``'s, the directory 0700 (a component's
    data: what an earlier stack run as root left there too)."""
    directory.mkdir(parents=True, exist_ok=True)
    if who.switches:
        for top, dirs, files in os.walk(directory):
            for name in [top, *(os.path.join(top, n) for n in dirs + files)]:
                with contextlib.suppress(FileNotFoundError):
                    info = os.lstat(name)
                    if (info.st_uid, info.st_gid) != (who.uid, who.gid):
                        os.chown(name, who.uid, who.gid, follow_symlinks=False)
    directory.chmod(0o700)


def passable(directory: Path) -> None:
    """Others may pass through ``directory`` (to their own data below it: PostgreSQL's, the
    account's), never list or read it: 0711."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o711)


# ---- reaching the trees the components read ------------------------------------------------


@dataclass
class Reach:
    """The trees the account cannot reach by their paths, each as an open directory
    (``/proc/self/fd/<n>`` in the components' argv, environment and configuration)."""

    handles: dict[str, int] = field(default_factory=dict)  # real path -> descriptor
    closed: dict[str, str] = field(default_factory=dict)  # real path -> what closes it

    @property
    def fds(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.handles.values())))

    def text(self, value: str) -> str:
        """``value`` with each handled tree's path as its descriptor's."""
        for path in sorted(self.handles, key=len, reverse=True):
            seen = f"/proc/self/fd/{self.handles[path]}"
            # the whole path, or a leading part of one (not /rooted, /root.bak)
            value = re.sub(rf"(?<![\w./-]){re.escape(path)}(?![\w.-])", seen, value)
        return value

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.handles.clear()


@contextlib.contextmanager
def reach(who: Account, trees: Iterable[Path]) -> Iterator[Reach]:
    """Open each of ``trees`` that ``who`` (another account than the caller) cannot reach
    because a directory above it is closed to others; refuse a tree closed itself."""
    found = Reach()
    try:
        if who.switches:
            for tree in sorted(trees, key=lambda t: len(t.resolve().parts)):
                real = tree.resolve()
                if any(real.is_relative_to(h) for h in found.handles):
                    continue
                blocker = unreachable_by_others(real)
                if blocker is None:
                    continue
                if blocker == real:
                    mode = real.stat().st_mode & 0o777
                    raise StackError(
                        f"the native components run as {who.name}, which must read {real}, "
                        f"but it is closed to other users (mode {mode:04o}): chmod o+rx "
                        f"{real} (its files need o+r too; a checkout cloned with umask 077 "
                        "needs chmod -R o+rX)"
                    )
                fd = os.open(real, os.O_PATH | os.O_DIRECTORY)
                found.handles |= {str(real): fd, str(tree.absolute()): fd}
                found.closed[str(real)] = str(blocker)
        yield found
    finally:
        found.close()


def describe(found: Reach, who: Account) -> list[str]:
    return [
        f"{who.name} reaches {tree} through an open directory ({closed} is closed to others)"
        for tree, closed in found.closed.items()
    ]
