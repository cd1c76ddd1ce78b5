"""The home folder and the user's ``hyperdash.json`` settings file: what the SDK, the CLI and the
server (its local mode writes the local account's key there) all need.

Dependency-free (the standard library, :mod:`hyperdash.errors` and :mod:`hyperdash.events`), so
the server may import it.
The home folder is ``$HYPERDASH_HOME`` (``~`` expanded) when set, else ``~/.hyperdash``; it is
read at call time.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .events import MAX_STALL_AFTER_S

__all__ = ["SETTINGS_FILE", "parse_duration", "parse_stall_window",
           "home_dir", "ensure_home", "settings_path", "load_settings", "save_settings", "check_settings_writable"]

SETTINGS_FILE = "hyperdash.json"

_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|min|h|d)?\s*", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(value: str | float | int) -> float:
    """A duration in seconds: a number of seconds, or text such as ``90``, ``90s``, ``10m``,
    ``1.5h``, ``2d``; ``off`` is 0. ValueError for anything else (or a negative number)."""
    if isinstance(value, bool):
        raise ValueError(f"a duration must be a number of seconds or text such as 10m, not {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and value.strip().lower() in ("off", "none", "never"):
        return 0.0
    else:
        match = _DURATION.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f"a duration is a number with an optional unit (ms, s, m, h, d) "
                             f"such as 90s, 10m or 1h, not {value!r}")
        seconds = float(match.group(1)) * _DURATION_UNITS[(match.group(2) or "s").lower()]
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be 0 or more seconds, not {value!r}")
    return seconds


def parse_stall_window(value: str | float | int) -> float:
    """A run's stall window in seconds (:func:`parse_duration`; 0 never), at most 30 days
    (:data:`~hyperdash.events.MAX_STALL_AFTER_S`, what the server takes); ValueError else."""
    seconds = parse_duration(value)
    if seconds > MAX_STALL_AFTER_S:
        raise ValueError(f"a stall window is at most {MAX_STALL_AFTER_S / 86400:g} days")
    return seconds


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


def load_settings(path: Path | str | None = None) -> dict[str, Any]:
    """The JSON object in ``path`` (default :func:`settings_path`); ``{}`` when it does not exist.

    Raises :class:`ConfigError`, naming the file, when it cannot be read or is not a JSON object.
    """
    path = Path(path) if path is not None else settings_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
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
    try:
        _write_atomically(path, json.dumps(settings, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def check_settings_writable(path: Path | str | None = None) -> None:
    """Raise :class:`ConfigError` unless the settings file (default :func:`settings_path`) can
    be read and written: before asking a server for an account or a key, which would be lost
    if it could not be saved."""
    path = Path(path) if path is not None else settings_path()
    load_settings(path)
    try:
        _write_atomically(path, "", keep=False)  # (the file is replaced, never written in place)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None


def _write_atomically(path: Path, text: str, keep: bool = True) -> None:
    """``text`` in a new file (0600) that becomes ``path`` (folder made 0700); with ``keep``
    False, the new file is removed instead (the folder can be written to)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    import tempfile  # (here: settings are written seldom, and every job and uploader imports this module)

    fd, tmp = tempfile.mkstemp(prefix=".hyperdash-", suffix=".json", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        if keep:
            os.replace(tmp, path)
            return
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.unlink(tmp)
