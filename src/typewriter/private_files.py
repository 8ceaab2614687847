"""The data directory holds secrets: made for its owner alone, and said so when it is not.

The database keeps conversations and the hashes of API keys, ``ticket-secret``
signs the EventSource URLs. What typewriter creates there is created private
(the directory 0700, the files 0600, whatever the umask). What an operator made
is left as it is, since a group may be meant to read it (a backup job), but a
start-up warning names whatever other users can read, once per path.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

__all__ = ["create_private_file", "make_private_dir", "warn_if_exposed"]

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_OTHERS = stat.S_IRWXG | stat.S_IRWXO
_warned: set[Path] = set()


def make_private_dir(path: Path) -> None:
    """``path`` made (and its missing parents, as the umask has them) unless it exists.

    ``mkdir``'s mode is masked by the umask, which only ever removes bits, so a
    directory made here is at most 0700.
    """
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)


def create_private_file(path: Path, content: bytes = b"") -> bool:
    """``path`` with ``content``, readable by its owner only, if there was none; whether it
    was made.

    The content is written to a private temporary file first and linked into place,
    so that a process racing this one sees either no file or the whole of it. SQLite
    gives a database's ``-wal`` and ``-shm`` files the mode of the database file, so
    creating an empty database 0600 before SQLite opens it keeps those private too.
    """
    descriptor, draft = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
        os.link(draft, path)
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: created in place, not atomically
        return _create_in_place(path, content)
    finally:
        os.unlink(draft)
    return True


def _create_in_place(path: Path, content: bytes) -> bool:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "wb") as file:
        file.write(content)
    return True


def warn_if_exposed(paths: Iterable[Path]) -> None:
    """A warning for each existing path that other users may read or enter (once each)."""
    for path in paths:
        try:
            mode = path.stat().st_mode
        except OSError:
            continue
        if mode & _OTHERS and path not in _warned:
            _warned.add(path)
            private = PRIVATE_DIR if stat.S_ISDIR(mode) else PRIVATE_FILE
            log.warning(
                "%s is open to other users (mode %o); 'chmod %o %s' keeps typewriter's data "
                "to the user it runs as",
                path,
                stat.S_IMODE(mode),
                private,
                path,
            )
