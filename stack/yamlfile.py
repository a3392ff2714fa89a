"""Reading YAML: every document the stack reads goes through ``load_yaml``."""

from __future__ import annotations

from typing import IO, Any

import yaml

# libyaml's loader where PyYAML has it (Debian's and PyPI's wheels do): the same documents as
# safe_load, several times faster; lint and the tests read the same files hundreds of times
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(document: str | IO[str]) -> Any:
    """``yaml.safe_load``, through libyaml."""
    return yaml.load(document, Loader=_LOADER)
