"""A plugin (``DSLRUN_PLUGINS=testkit.full_disk``) that fills the score cache's disk.

After ``$FULL_DISK_AFTER`` successful writes of judge replies, every further write of
the score cache raises ``OSError(ENOSPC)``, as SQLite's file writes would on a full disk
(``$FULL_DISK_ERRNO`` picks another errno, e.g. 13 for a permission error).
"""

from __future__ import annotations

import errno
import os
import threading

from dslrun.runtime.cache.sqlite import SqliteStore

_put_many = SqliteStore.put_many
_lock = threading.Lock()
_writes = [0]


def put_many(self, node, items):
    items = list(items)
    with _lock:
        _writes[0] += 1
        full = _writes[0] > int(os.environ.get("FULL_DISK_AFTER", "0"))
    if full:
        code = int(os.environ.get("FULL_DISK_ERRNO", errno.ENOSPC))
        raise OSError(code, os.strerror(code), str(self.path))
    return _put_many(self, node, items)


SqliteStore.put_many = put_many
