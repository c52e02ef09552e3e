"""The civicard command line (Typer)."""
