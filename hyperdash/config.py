"""Where the API key and the server URL come from, and the ``hyperdash.json`` settings files.

API key, first found wins: an ``api_key_getter`` passed in code, ``HYPERDASH_API_KEY``,
``hyperdash.json`` in the working directory, ``hyperdash.json`` beside the main script,
``<home>/hyperdash.json``, ``~/hyperdash.json``. Server URL: ``HYPERDASH_SERVER``, else
``"server"`` in the same files, else :data:`hyperdash.events.DEFAULT_SERVER`. The home folder is
``HYPERDASH_HOME`` when set, else ``~/.hyperdash``. Everything is read at call time.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .events import DEFAULT_SERVER

# The home folder and the settings file are shared with the server: they live in .settings.
from .settings import (
    SETTINGS_FILE,
    check_settings_writable,
    ensure_home,
    home_dir,
    load_settings,
    save_settings,
    settings_path,
)

__all__ = [
    "SETTINGS_FILE",
    "home_dir",
    "ensure_home",
    "settings_path",
    "settings_files",
    "load_settings",
    "check_settings_writable",
    "save_settings",
    "api_key",
    "api_key_and_source",
    "server_url",
    "is_http_address",
    "key_refresh_seconds",
    "env_float",
    "KeySource",
]

DEFAULT_KEY_REFRESH_SECONDS = 300.0


def _main_script_dir() -> Path | None:
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    return Path(script).resolve().parent if script else None


def settings_files() -> list[Path]:
    """The hyperdash.json files consulted for the key and the server, most specific first."""
    candidates = [Path.cwd() / SETTINGS_FILE]
    script_dir = _main_script_dir()
    if script_dir is not None:
        candidates.append(script_dir / SETTINGS_FILE)
    candidates += [settings_path(), Path.home() / SETTINGS_FILE]
    unique: list[Path] = []
    for path in candidates:
        if path not in unique:
            unique.append(path)
    return unique


def _first_setting(name: str) -> tuple[Any, Path | None]:
    """The first value of ``name`` in the settings files, and the file it is in."""
    for path in settings_files():
        value = load_settings(path).get(name)
        if value:
            return value, path
    return None, None


#: Where a key came from, in words, for the messages that say which key was refused.
GETTER_SOURCE = "the api_key_getter"
ARGUMENT_SOURCE = "the api_key argument"
ENV_SOURCE = "the environment variable HYPERDASH_API_KEY"


def api_key_and_source(getter: Callable[[], str | None] | None = None) -> tuple[str | None, str | None]:
    """The API key, looked up in the documented order, and where it was found, in words
    (:data:`GETTER_SOURCE`, :data:`ENV_SOURCE`, or a hyperdash.json's path); ``(None, None)``
    when there is none.

    Raises :class:`ConfigError` when a settings file on the way cannot be parsed.
    """
    if getter is not None:
        key = getter()
        if key:
            return str(key).strip(), GETTER_SOURCE
    key = os.environ.get("HYPERDASH_API_KEY")
    if key:
        return key.strip(), ENV_SOURCE
    key, path = _first_setting("api_key")
    return (str(key).strip(), str(path)) if key else (None, None)


def api_key(getter: Callable[[], str | None] | None = None) -> str | None:
    """The API key, looked up in the documented order; ``None`` when there is none.

    Raises :class:`ConfigError` when a settings file on the way cannot be parsed.
    """
    return api_key_and_source(getter)[0]


def server_url() -> str:
    """The server's base URL, without a trailing slash: ``$HYPERDASH_SERVER``, else the first
    settings file's ``server``, else the default. Raises :class:`ConfigError`, naming where it
    came from, when it is not an http:// or https:// address."""
    url, where = os.environ.get("HYPERDASH_SERVER"), "the environment variable HYPERDASH_SERVER"
    if not url:
        try:
            url, path = _first_setting("server")
            where = str(path)
        except ConfigError:
            url = None
    if not url:
        return DEFAULT_SERVER.rstrip("/")
    text = str(url).strip().rstrip("/")
    if not is_http_address(text):
        raise ConfigError(f"the server address {url!r} in {where} is not an http:// or https:// address")
    return text


def is_http_address(text: str) -> bool:
    """Whether ``text`` is an http:// or https:// address with a host (and a port, if any, that
    is a number)."""
    from urllib.parse import urlsplit

    try:
        parsed = urlsplit(text.strip())
        return parsed.scheme in ("http", "https") and bool(parsed.hostname) and (parsed.port or 1) > 0
    except ValueError:  # (a port that is no number or out of range, a broken [IPv6] host)
        return False


def env_float(name: str, default: float) -> float:
    """A non-negative number from the environment variable ``name``, else ``default``."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        return default
    return value if math.isfinite(value) and value >= 0 else default


def key_refresh_seconds() -> float:
    """How long a key is trusted before it is read again (``HYPERDASH_KEY_REFRESH_SECONDS``)."""
    return env_float("HYPERDASH_KEY_REFRESH_SECONDS", DEFAULT_KEY_REFRESH_SECONDS)


class KeySource:
    """The API key of a long-running job, re-read at most every ``refresh_seconds``.

    So a key rotated in ``HYPERDASH_API_KEY``, a hyperdash.json, or returned by a new call of
    ``getter`` is picked up without restarting the job. Thread-safe. ``get()`` never raises: a
    settings file that cannot be parsed is reported through ``.error`` and yields no key.
    """

    def __init__(
        self,
        getter: Callable[[], str | None] | None = None,
        refresh_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.getter = getter
        self.refresh_seconds = key_refresh_seconds() if refresh_seconds is None else refresh_seconds
        self.error: str | None = None
        #: where the current key was found, in words (see :func:`api_key_and_source`)
        self.source: str | None = None
        self._clock = clock
        self._key: str | None = None
        self._read_at: float | None = None
        self._lock = threading.Lock()

    def get(self) -> str | None:
        """The current key, re-read when the last read is older than ``refresh_seconds``."""
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self.refresh_seconds:
                self._read(now)
            return self._key

    def _read(self, now: float) -> None:
        try:
            self._key, self.source = api_key_and_source(self.getter)
            self.error = None
        except ConfigError as exc:
            self._key, self.source, self.error = None, None, str(exc)
        except Exception as exc:  # a user-supplied getter failing must not reach the job
            self._key, self.source, self.error = None, None, f"api_key_getter failed: {exc!r}"
        self._read_at = now
