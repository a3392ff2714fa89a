"""``python -m assistant``: serve the API with uvicorn on ASSISTANT_HOST:ASSISTANT_PORT, with
the server's limits (``server.py``)."""

from __future__ import annotations

import logging

from .app import create_app
from .config import Settings
from .server import serve


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings.from_env(generate_token=True)  # one process: a generated token is safe
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
