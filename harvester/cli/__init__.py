"""The `harvest` command line: the only room that imports click. Each verb is a module of its own."""

from harvester.allocators import lean_allocators

lean_allocators()  # before the verbs import deltalake, whose allocator reads its options once

from harvester.cli.exits import Exit
from harvester.cli.main import main

__all__ = ["Exit", "main"]
