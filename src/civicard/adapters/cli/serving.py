"""Running the ASGI server for a bootstrapped container."""

from __future__ import annotations

import uvicorn
from rich.console import Console

from civicard.adapters.api.app import create_app
from civicard.bootstrap import Container


def serve_app(container: Container, host: str, port: int) -> None:
    Console(stderr=True).print(f"civicard serving on [bold]http://{host}:{port}[/bold] (Ctrl+C to stop)")
    uvicorn.run(create_app(container), host=host, port=port, log_level="info")
