"""The code that checks, prepares and runs the monitoring stack (``python -m stack``).

Used by the Makefile (``make generate|lint|up|down|status|logs``) and by the tests.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("dev", "stage", "prod")
