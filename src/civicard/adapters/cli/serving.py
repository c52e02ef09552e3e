"""Running the ASGI server for a bootstrapped container."""

from __future__ import annotations

import uvicorn
from rich.console import Console

from civicard.adapters.api.app import create_app
from civicard.adapters.api.observability import configure_logging
from civicard.bootstrap import Container


def serve_app(container: Container, host: str, port: int) -> None:
    Console(stderr=True).print(f"civicard serving on [bold]http://{host}:{port}[/bold] (Ctrl+C to stop)")
    configure_logging(container.settings)  # uvicorn's own start-up lines go through it too
    # log_config=None: uvicorn installs no handlers of its own (the app's JSON or plain lines only).
    uvicorn.run(create_app(container), host=host, port=port, log_level="info", log_config=None)
