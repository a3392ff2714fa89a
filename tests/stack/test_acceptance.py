"""The acceptance check's reading of the README and of the host's package sources (the check
itself, a bare container running the quick start, is `make acceptance`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack import ROOT
from stack.acceptance import BEGIN, END, Run, Sources, check_refusal, quick_start
from stack.settings import StackError


def block(*lines: str) -> str:
    return f"# Title\n\n{BEGIN} -->\n```bash\n" + "\n".join(lines) + f"\n```\n{END}\n"


def test_the_readme_quick_start_is_prerequisites_clone_and_the_two_commands() -> None:
    steps = quick_start((ROOT / "README.md").read_text())
    assert steps.prerequisites.startswith("apt-get update && apt-get install -y ")
    assert {"git", "make", "python3"} <= set(steps.prerequisites.split())
    assert steps.directory == "monitoring"
    assert steps.makes == ["make up", "make test"]


def test_comments_are_dropped_and_sudo_is_taken_off() -> None:
    steps = quick_start(block(
        "sudo apt-get install -y make python3   # the prerequisites",
        "git clone https://example.invalid/x/monitoring.git there && cd there",
        "",
        "make up ENV=dev   # start",
    ))  # fmt: skip
    assert steps.prerequisites == "apt-get install -y make python3"
    assert steps.directory == "there"
    assert steps.makes == ["make up ENV=dev"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no block here", "no quick-start block"),
        (block("apt-get install -y make", "git clone u && cd d", "curl x | sh", "make up"),
         "no rule to run 'curl x | sh'"),
        (block("git clone u && cd d", "make up"), "needs an apt-get line"),
    ],
)  # fmt: skip
def test_a_quick_start_it_cannot_run_is_refused(text: str, message: str) -> None:
    with pytest.raises(StackError, match=message):
        quick_start(text)


def test_a_local_package_index_is_mounted_with_the_files_it_links_to(tmp_path: Path) -> None:
    (tmp_path / "pypi" / "simple").mkdir(parents=True)
    (tmp_path / "wheels").mkdir()
    (tmp_path / "ca.crt").write_text("pem")
    found = Sources()
    for path in (tmp_path / "pypi" / "simple", tmp_path / "wheels", tmp_path / "ca.crt"):
        found.add_referenced(path)
    assert found.mounts == {tmp_path / "pypi", tmp_path / "wheels"}
    assert found.files == {str(tmp_path / "ca.crt"): tmp_path / "ca.crt"}


def refusal(code: int, output: str) -> Run:
    return Run("make up", code, output, 0.1)


def test_a_refusal_is_one_message_with_one_sudo_line() -> None:
    message = (
        "make up needs Debian packages that are not installed: postgresql prometheus. Install "
        "them as root, then run it again:\n"
        "  sudo apt-get update && sudo apt-get install -y --no-install-recommends "
        "postgresql prometheus\n"
        "make: *** [Makefile:44: packages-up] Error 2\n"
    )
    assert check_refusal(refusal(2, message)) == {"postgresql", "prometheus"}
    with pytest.raises(StackError, match="one message"):
        check_refusal(refusal(0, message))  # it must not pass
    with pytest.raises(StackError, match="one message"):
        check_refusal(refusal(2, "creating .venv\n" + message))  # something else happened
