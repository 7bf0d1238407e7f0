"""The `carepath` command line. Each command lives in its own module and imports what it needs
lazily, so that `validate`, `schema` and `graph` never pay for Prefect or the database."""

from engine.cli.app import app, main

__all__ = ["app", "main"]
