"""``python -m assistant.healthcheck``: the container's healthcheck.

Exit 0 when the API answers HTTP on ``127.0.0.1:$ASSISTANT_PORT`` at all, 1 otherwise
(``ASSISTANT_HEALTHCHECK_URL`` names another URL: the traffic generator's container checks
the API it drives). A 503
from ``/health/overall`` (a dependency is down) still counts as alive: the process serves,
reports the outage through ``/metrics`` and recovers by itself, so restarting it would not help.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    url = os.environ.get("ASSISTANT_HEALTHCHECK_URL") or (
        f"http://127.0.0.1:{os.environ.get('ASSISTANT_PORT', '8000')}/health/overall"
    )
    try:
        with urllib.request.urlopen(url, timeout=3):
            return 0
    except urllib.error.HTTPError:  # it answered, with a status saying a dependency is down
        return 0
    except OSError as exc:
        print(f"assistant not answering on {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
