"""Where the API key and the server URL come from, and the ``hyperdash.json`` settings files.

API key, first found wins: an ``api_key_getter`` passed in code, ``HYPERDASH_API_KEY``,
``hyperdash.json`` in the working directory, ``hyperdash.json`` beside the main script,
``<home>/hyperdash.json``, ``~/hyperdash.json``. Server URL: ``HYPERDASH_SERVER``, else
``"server"`` in the same files, else :data:`hyperdash.events.DEFAULT_SERVER`. The home folder is
``HYPERDASH_HOME`` when set, else ``~/.hyperdash``. Everything is read at call time.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError
from .events import DEFAULT_SERVER

__all__ = [
    "SETTINGS_FILE",
    "home_dir",
    "ensure_home",
    "settings_path",
    "settings_files",
    "load_settings",
    "save_settings",
    "api_key",
    "api_key_and_source",
    "server_url",
    "key_refresh_seconds",
    "env_float",
    "KeySource",
]

SETTINGS_FILE = "hyperdash.json"
DEFAULT_KEY_REFRESH_SECONDS = 300.0


def home_dir() -> Path:
    """The folder for every local Hyperdash file: ``$HYPERDASH_HOME``, else ``~/.hyperdash``."""
    env = os.environ.get("HYPERDASH_HOME")
    return Path(env).expanduser() if env else Path.home() / ".hyperdash"


def ensure_home() -> Path:
    """The home folder, created private (0700) when missing."""
    home = home_dir()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    return home


def settings_path() -> Path:
    """The user's settings file, ``<home>/hyperdash.json`` (written by login and signup)."""
    return home_dir() / SETTINGS_FILE


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


def load_settings(path: Path | str | None = None) -> dict[str, Any]:
    """The JSON object in ``path`` (default :func:`settings_path`); ``{}`` when it does not exist.

    Raises :class:`ConfigError`, naming the file, when it cannot be read or is not a JSON object.
    """
    path = Path(path) if path is not None else settings_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


def save_settings(updates: dict[str, Any], path: Path | str | None = None) -> Path:
    """Merge ``updates`` into the settings file and write it atomically (folder 0700, file 0600).

    Keys whose value is ``None`` are removed. Returns the file's path.
    """
    path = Path(path) if path is not None else settings_path()
    settings = load_settings(path)
    for key, value in updates.items():
        if value is None:
            settings.pop(key, None)
        else:
            settings[key] = value
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".hyperdash-", suffix=".json", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(settings, out, indent=2, sort_keys=True)
            out.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def _first_setting(name: str) -> Any:
    for path in settings_files():
        value = load_settings(path).get(name)
        if value:
            return value
    return None


def api_key(getter: Callable[[], str | None] | None = None) -> str | None:
    """The API key, looked up in the documented order; ``None`` when there is none.

    Raises :class:`ConfigError` when a settings file on the way cannot be parsed.
    """
    return api_key_and_source(getter)[0]


def api_key_and_source(getter: Callable[[], str | None] | None = None) -> tuple[str | None, str | None]:
    """The API key and where it was found: ``"api_key_getter"``, ``"HYPERDASH_API_KEY"`` or
    the path of a hyperdash.json (``(None, None)`` when there is none). A spool keeps the
    source, never the key, so that whoever uploads it later reads the key from the same place."""
    if getter is not None:
        key = getter()
        if key:
            return str(key).strip(), "api_key_getter"
    key = os.environ.get("HYPERDASH_API_KEY")
    if key:
        return key.strip(), "HYPERDASH_API_KEY"
    for path in settings_files():
        value = load_settings(path).get("api_key")
        if value:
            return str(value).strip(), str(path)
    return None, None


def server_url() -> str:
    """The server's base URL, without a trailing slash."""
    url = os.environ.get("HYPERDASH_SERVER")
    if not url:
        try:
            url = _first_setting("server")
        except ConfigError:
            url = None
    return str(url or DEFAULT_SERVER).rstrip("/")


def env_float(name: str, default: float) -> float:
    """A non-negative number from the environment variable ``name``, else ``default``."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        return default
    return value if value >= 0 else default


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
        self.source: str | None = None  # where the key was found (see api_key_and_source)
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
