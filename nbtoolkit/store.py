"""Which cache a run uses: the SQLite file on this machine, or a Redis server a team shares.

``cache_url=`` (or ``$NBTOOLKIT_CACHE_URL``) names a Redis server (``redis://host:6379/0``);
otherwise ``cache_path=`` (or the default file under ``$NBTOOLKIT_CACHE_DIR``). Both stores
have the same keys, modes and entries.
"""

from __future__ import annotations

import os
from typing import Any

from .cache import Cache
from .redis_cache import ENV_URL, RedisCache

__all__ = ["open_cache"]


def open_cache(path: str | os.PathLike[str] | None = None, url: str | None = None) -> Any:
    """The cache for a run: ``RedisCache`` for a Redis URL (``url``, else
    ``$NBTOOLKIT_CACHE_URL``), else the SQLite ``Cache`` at ``path`` (or the default file).

    Raises ``ConfigError`` for a URL that is not a Redis URL. Opening makes no connection:
    a server that is down shows at the first lookup, as a warning of the run.
    """
    url = url or (None if path is not None else os.environ.get(ENV_URL)) or None
    if url:
        return RedisCache(url)
    return Cache(path)
