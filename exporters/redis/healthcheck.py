"""Exit 0 when the URL given as the only argument answers 2xx within 3 s, 1 otherwise."""

import sys
import urllib.request

try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as response:
        sys.exit(0 if 200 <= response.status < 300 else 1)
except OSError as exc:
    print(f"{sys.argv[1]}: {exc}", file=sys.stderr)
    sys.exit(1)
