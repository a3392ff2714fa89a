"""The README's quick start: the lines between its markers, sorted into the prerequisites,
the clone and the make lines."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..settings import StackError

BEGIN = "<!-- quick-start"
END = "<!-- quick-start:end -->"


@dataclass
class QuickStart:
    prerequisites: str  # a shell line, run as root
    directory: str  # where `git clone` puts the tree
    makes: list[str] = field(default_factory=list)  # `make ...` lines, in order


def quick_start(text: str) -> QuickStart:
    """The commands between the README's markers: the prerequisites line, the clone, the make
    lines. Comments after `#` are dropped; anything else is an error naming the line."""
    begin, end = text.find(BEGIN), text.find(END)
    if begin < 0 or end < begin:
        raise StackError(f"README.md: no quick-start block ({BEGIN} ... {END})")
    fence = re.search(r"```(?:bash|sh)\n(.*?)```", text[begin:end], re.S)
    if fence is None:
        raise StackError("README.md: the quick-start block has no ```bash fence")
    prerequisites, directory, makes = None, None, []
    for raw in fence[1].splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        clone = re.fullmatch(r"git clone \S+?(?:\.git)?(?: \S+)? && cd (?P<dir>[\w.-]+)", line)
        if clone:
            directory = clone["dir"]
        elif line.startswith(("apt-get ", "sudo apt-get ")) and prerequisites is None:
            prerequisites = line.replace("sudo ", "")
        elif line.startswith("make "):
            makes.append(line)
        else:
            raise StackError(f"README.md: quick start: no rule to run {line!r}")
    if prerequisites is None or directory is None or not makes:
        raise StackError("README.md: quick start needs an apt-get line, a clone, make lines")
    return QuickStart(prerequisites, directory, makes)
