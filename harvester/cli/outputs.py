"""Where a verb writes a file the user named: checked before any work, put in place atomically.

A missing directory or a directory given as the file is one line and exit 2, never a traceback after
minutes of work; the file appears whole or not at all (written beside it, then renamed).
"""

from __future__ import annotations

import os
from pathlib import Path

from harvester.cli.exits import Exit, fail
from harvester.warehouse.files import fsync_dir


def checked_output(path: Path, flag: str = "--output") -> Path:
    """`path` made absolute, after checking that its directory exists and it is not a directory itself."""
    target = path.expanduser().absolute()
    if target.is_dir():
        fail(Exit.BAD_INPUT, f"{flag} {path}: is a directory; name a file")
    if not target.parent.is_dir():
        fail(Exit.BAD_INPUT, f"{flag} {path}: directory {target.parent} does not exist")
    if not os.access(target.parent, os.W_OK | os.X_OK):
        fail(Exit.BAD_INPUT, f"{flag} {path}: directory {target.parent} is not writable")
    return target


def put_in_place(written: Path, target: Path) -> None:
    """Rename a finished file (on the target's file system) onto `target`, durably."""
    os.replace(written, target)
    fsync_dir(target.parent)
