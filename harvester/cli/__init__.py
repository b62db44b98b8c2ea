"""The `harvest` command line: the only room that imports click. Each verb is a module of its own."""

from harvester.cli.exits import Exit
from harvester.cli.main import main

__all__ = ["Exit", "main"]
