"""A run: its lifecycle and its numbered event stream.

A :class:`Run` numbers every event when it is captured (``seq``, from 1), writes it to the
run's spool, and lets a :class:`~hyperdash.shipper.Shipper` thread send it. Output bytes come in
through :meth:`Run.write` (from :mod:`hyperdash.capture`, or the CLI's pumps) and are also
appended to a plain-text log of the run. :meth:`Run.end` records the final status, flushes for a
bounded time, and hands what is left to a detached uploader.

A run never raises into the job for a problem of its own (disk, network, key): it warns once,
in one line on stderr, and goes on. It raises only for a wrong argument (a bad name, a metric
that is not a number).

After ``fork()``, the child's copy of a run is inert: its output still reaches the parent's
capture through the inherited descriptors, but its params, metrics and end are not recorded
(one line in the child says so, the first time it tries).
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from . import config, framing
from .errors import AuthenticationError, HyperdashError
from .events import (
    ALERT,
    APIS,
    FINAL_STATUSES,
    MAX_NAME_CHARS,
    METRIC,
    PARAM,
    RUN_ENDED,
    RUN_STARTED,
    STREAMS,
    SUCCESS,
    check_alert,
    nonfinite_text,
    now_ms,
    signal_name,
)
from .links import follow_message
from .settings import parse_stall_window
from .spool import EVENT, Spool

if TYPE_CHECKING:
    from .shipper import Shipper

__all__ = ["Run", "DEFAULT_EXIT_TIMEOUT", "MAX_PARAM_TEXT_CHARS"]

DEFAULT_EXIT_TIMEOUT = 3.0
# A backlog larger than this at exit (bytes of spool) goes to a detached uploader at once, when
# one can be started; a smaller one is sent before the job exits, within the exit timeout.
HANDOFF_BYTES = 512 * 1024
# The server keeps a param's text up to this many characters.
MAX_PARAM_TEXT_CHARS = 64 * 1024

# Write errors that mean the disk (or the process's file size limit) is full.
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}

_live_runs: weakref.WeakSet[Run] = weakref.WeakSet()


def _forget_runs_in_child() -> None:
    for run in list(_live_runs):
        run._detach_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_runs_in_child)


def _kernel_stderr() -> TextIO | None:
    """A notebook kernel's own stderr, None outside one (see :func:`hyperdash.capture.kernel_stderr`)."""
    if "ipykernel" not in sys.modules:  # (no kernel: every other job is spared importing the capture)
        return None
    from .capture import kernel_stderr

    return kernel_stderr()


def new_run_uuid() -> str:
    """A random (version 4) UUID, made here because importing :mod:`uuid` costs every job a
    few milliseconds at start (it imports :mod:`platform`)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _check_name(name: Any, what: str = "name") -> str:
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a string, not {type(name).__name__}")
    if not name.strip():
        raise ValueError(f"{what} must not be empty")
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"{what} is longer than {MAX_NAME_CHARS} characters")
    return name


_FLOAT_INT_LIMIT = 2**1023  # (an integer past it is made a float: it may be none but infinity)


def _nearest_float(value: Any) -> float:
    """The float nearest a real number; an infinity beyond a float's range."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _plain(value: Any) -> Any:
    """``value`` as a JSON scalar: numpy and torch scalars give up their Python value."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    item = getattr(value, "item", None)
    if callable(item):
        try:
            plain = item()
        except Exception:  # not one value: numpy says ValueError, torch RuntimeError
            plain = None
        if isinstance(plain, (bool, int, float, str)):
            return plain
    raise TypeError(f"expected a number, a bool or a string, not {type(value).__name__}")


def _param_value(value: Any) -> Any:
    """A param's value as the wire carries it (a number, a bool, a string or null), taking
    whatever the original SDK took: a list, a dict or a tuple becomes its JSON text, anything
    else that is not a scalar its ``str()``. NaN and infinities become their text too."""
    try:
        plain = _plain(value)
    except TypeError:
        if isinstance(value, (list, tuple, dict)):
            try:
                return json.dumps(value, ensure_ascii=False, default=_json_default)
            except (TypeError, ValueError):
                pass
        return str(value)
    if isinstance(plain, float) and not math.isfinite(plain):
        return str(plain)
    return plain


def _json_default(value: Any) -> Any:
    """What ``json.dumps`` writes for ``value`` inside a param: numpy and torch scalars and
    arrays as numbers and lists, anything else as its ``str()``."""
    try:
        return _plain(value)
    except TypeError:
        pass
    to_list = getattr(value, "tolist", None)
    if callable(to_list):
        try:
            return to_list()
        except (TypeError, ValueError):
            pass
    return str(value)


def _safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:100] or "run"


def _signal_name(signal: int | str | None) -> str | None:
    return signal if signal is None or isinstance(signal, str) else signal_name(signal)


def _has_other_entries(folder: Path, name: str) -> bool:
    try:
        with os.scandir(folder) as entries:
            return any(entry.name != name for entry in entries)
    except OSError:
        return False


def exit_timeout_setting() -> float:
    """Seconds a run may spend flushing at exit (``HYPERDASH_EXIT_TIMEOUT``)."""
    return config.env_float("HYPERDASH_EXIT_TIMEOUT", DEFAULT_EXIT_TIMEOUT)


class Run:
    """One monitored run. ``start()`` it, feed it, ``end()`` it.

    ``api`` names the face that sent it (``monitor``, ``experiment``, ``cli_run``, ...).
    ``echo`` shows each param and metric in the terminal as a line. ``exit_timeout`` bounds
    the flush at :meth:`end` (default ``HYPERDASH_EXIT_TIMEOUT``, else 3 seconds).
    ``quiet_config_errors=True`` tells the run that the caller has already shown why a
    hyperdash.json cannot be read, so the run does not say it again. ``stall_after``: how long
    the job may make no progress (no output, no metric, no param) before the server marks the
    run stalled, in seconds or as text such as ``"10m"``; 0 never; None leaves it to the server
    (a bad value is said once on stderr and left to the server).
    """

    def __init__(
        self,
        name: str,
        *,
        api: str = "monitor",
        api_key_getter: Callable[[], str | None] | None = None,
        echo: bool = True,
        exit_timeout: float | None = None,
        quiet_config_errors: bool = False,
        stall_after: float | str | None = None,
    ):
        self.name = _check_name(name)
        if api not in APIS:
            raise ValueError(f"api must be one of {', '.join(APIS)}, not {api!r}")
        self.api = api
        self.api_key_getter = api_key_getter
        self.echo = echo
        self.exit_timeout = exit_timeout_setting() if exit_timeout is None else exit_timeout
        self.uuid = new_run_uuid()
        self.log_path: Path | None = None
        self.status: str | None = None
        self.server_url: str | None = None
        # where the SDK's own lines go: the terminal's stderr, also while fd 2 is captured
        self.console_fd = 2
        # in a notebook's kernel, they go to the cell instead: its descriptor 2 may lead to the
        # kernel's console alone (capture_fd_output off), where no one looks
        self.console_stream = _kernel_stderr()
        self._lock = threading.RLock()
        self._end_lock = threading.Lock()
        self._next_seq = 1
        self._framers = {stream: framing.LineFramer() for stream in STREAMS}
        self._spool: Spool | None = None
        self._shipper: Shipper | None = None
        self._key_source: config.KeySource | None = None
        self._log_fd: int | None = None
        self._log_open_line: str | None = None  # the stream whose line the log ends inside
        self._warned: set[str] = set()
        self._started = False
        self._ended = False
        self.quiet_config_errors = quiet_config_errors
        self._detached = False
        self._forked = False
        self._orphans_checked = False
        self._logs_pruned = False
        #: The stop asked of the run from the dashboard, the CLI or the API
        #: (``{"requested_at", "by", "via"}``), once the server has told it.
        self.stop_request: dict[str, Any] | None = None
        #: Called (on the sending thread) with :attr:`stop_request` when it comes: each face
        #: stops its job its own way, and may return what it does, in words, where that is not
        #: just "stopping the job". None: nothing can stop the job, and the user is told so.
        self.on_stop: Callable[[dict[str, Any]], str | None] | None = None
        self.stall_after: float | None = None
        if stall_after is not None:
            try:
                self.stall_after = parse_stall_window(stall_after)
            except ValueError as exc:
                self.stall_after = None
                self.warn("stall_after", f"stall_after is not used ({exc}); the server's window applies")

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> Run:
        """Open the spool and the log, record ``run_started``, start sending. Returns self."""
        if self._started:
            return self
        self._started = True
        _live_runs.add(self)
        try:
            self._start()
        except Exception as exc:  # never the job's problem
            why = str(exc) if isinstance(exc, HyperdashError) else repr(exc)
            self.warn("start", f"monitoring is off for this run: {why}")
            self._detached = True
        return self

    def _start(self) -> None:
        from .shipper import Shipper, SpoolSender
        from .transport import Transport

        self._key_source = key_source = config.KeySource(self.api_key_getter)
        key_source.get()
        self.server_url = server_url = config.server_url()
        # where the key comes from, never the key: whoever uploads the spool later reads it there
        meta = {"uuid": self.uuid, "name": self.name, "api": self.api, "server": server_url,
                "key_source": key_source.source, "created": now_ms(), "pid": os.getpid()}
        try:
            config.ensure_home()
            spool = Spool.create(self.uuid, meta)
        except OSError as exc:
            spool = Spool.in_memory()
            self.warn("spool", f"cannot write the spool ({exc}); keeping unsent events in memory, bounded")
        spool.on_disk_error = self._spool_disk_error
        self._spool = spool
        self._open_log()
        started = {"job_name": self.name, "host": os.uname().nodename, "pid": os.getpid(), "api": self.api}
        if self.stall_after is not None:
            started["stall_after"] = self.stall_after
        self._record(RUN_STARTED, started)
        transport = Transport(server_url, api_key=key_source.get)
        sender = SpoolSender(spool, transport, self.uuid, self.api,
                             on_dropped=lambda exc: self.warn("dropped", f"the server refused an event: {exc}"),
                             on_reply=self._heard,
                             on_gone=lambda exc: self.warn("gone", f"{exc.message or exc}; this run's events are "
                                                           "dropped from now on (the job goes on)"))
        self._shipper = Shipper(sender, warn=self._warn_from_shipper, on_tick=self._tick,
                                key_refresh_seconds=key_source.refresh_seconds)
        self._shipper.start()
        self.say(follow_message(server_url, self.uuid))

    def _spool_disk_error(self, exc: OSError) -> None:
        if not self._warn_disk(exc):
            self.warn("spool", f"cannot write the spool any more ({exc}); keeping unsent events in memory, bounded")

    def _open_log(self) -> None:
        logs = config.home_dir() / "logs"
        folder = logs / _safe_filename(self.name)
        stem = f"{_safe_filename(self.name)}_{time.strftime('%Y-%m-%dT%H-%M-%S')}"
        try:
            config.ensure_home()
            logs.mkdir(mode=0o700, exist_ok=True)
            folder.mkdir(mode=0o700, exist_ok=True)
            path = folder / f"{stem}.log"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
            try:
                self._log_fd = os.open(path, flags, 0o600)
            except FileExistsError:
                path = folder / f"{stem}_{self.uuid[:8]}.log"
                self._log_fd = os.open(path, flags, 0o600)
            self.log_path = path
        except OSError as exc:
            self.warn("log", f"cannot write the run's log file: {exc}")

    def end(self, status: str = SUCCESS, exit_code: int | None = None, signal: int | str | None = None) -> None:
        """Record the final status and flush for at most ``exit_timeout`` seconds. Idempotent.

        Prints where the run's log is and, when events are left unsent, one line saying how
        many and how they will be sent.
        """
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {', '.join(FINAL_STATUSES)}, not {status!r}")
        with self._end_lock:
            if self._ended or not self._started:
                return
            self._ended = True
        if self._detached:
            return
        self.status = status
        try:
            self._end(status, exit_code, _signal_name(signal))
        except Exception as exc:
            self.warn("end", f"internal error while ending the run: {exc!r}")
        finally:
            _live_runs.discard(self)

    def _end(self, status: str, exit_code: int | None, signal: str | None) -> None:
        with self._lock:
            self._store_unfinished_lines()
            self._record(RUN_ENDED, {"final_status": status, "exit_code": exit_code, "signal": signal})
        spool, shipper, server_url = self._spool, self._shipper, self.server_url
        if spool is None or shipper is None or server_url is None:
            return  # (a run that started is detached until it has all three: never here)
        interrupted = None
        try:
            shipper.close(self._exit_flush_timeout(spool))
        except KeyboardInterrupt as exc:  # Ctrl-C while the backlog went: the rest stays spooled
            interrupted = exc
        self._close_log()
        self._prune_logs()
        on_disk, in_memory = spool.unsent()
        lost = in_memory + spool.dropped_events
        if on_disk == 0:
            spool.remove()
        else:
            # before the spool's lock goes, and before the look at the uploader's: an uploader
            # about to exit waits for this spool, whoever holds it a moment longer
            spool.mark_handed_over()
            spool.close()
        self._say_what_is_left(on_disk, lost, shipper.last_error, spool, server_url)
        if self.log_path is not None:
            self.say(f"the log of this run is at {self.log_path}")
        if interrupted is not None:
            raise interrupted

    def _exit_flush_timeout(self, spool: Spool) -> float:
        """How long to send the backlog before the job may exit: ``exit_timeout``, unless the
        backlog is large and a detached uploader can take it over at once (a flood of output
        just before the end does not hold the job's exit; what it wrote last is on the server
        moments later). When an uploader already runs (it may be waiting for another server)
        or the backlog is in memory only, the run sends it itself."""
        if self.exit_timeout <= 0 or not spool.on_disk or spool.end_offset - spool.cursor_offset <= HANDOFF_BYTES:
            return self.exit_timeout
        try:
            from .uploader import uploader_running

            return self.exit_timeout if uploader_running() else 0.0
        except Exception:
            return self.exit_timeout

    def _say_what_is_left(self, left: int, lost: int, error: HyperdashError | None, spool: Spool,
                          server_url: str) -> None:
        """The run's last word on its events: one line, when any are unsent or lost."""
        parts = []
        if lost:
            parts.append(f"{lost} events of this run are lost: the spool could not be written to disk "
                         "and the server did not take them in time")
        if left:
            parts.append(self._hand_off(left, error, spool, server_url))
        if parts:
            self.say("; ".join(parts))

    def _hand_off(self, left: int, error: HyperdashError | None, spool: Spool, server_url: str) -> str:
        """Start the detached uploader for the ``left`` events waiting in the spool (unless it
        could not send them either); what to tell the user."""
        key = self._key_source.get() if self._key_source else None
        if not key or isinstance(error, AuthenticationError):
            # Nobody could send them now: no uploader, which would only retry in vain.
            if not key and self._key_source is not None and self._key_source.error:
                why = "no usable API key" if self.quiet_config_errors else \
                    f"no usable API key: {self._key_source.error}"
            elif not key:
                why = "no API key is configured"
            else:
                why = "the server refused the API key"
            return (f"{left} events of this run are not sent ({why}); they wait in the spool: "
                    "after `hyperdash login`, `hyperdash sync` sends them")
        try:
            from .errors import ServerError, ServerUnreachable
            from .uploader import ServerBook, spawn_detached, uploader_running

            book = ServerBook.load()
            if uploader_running():
                how = "the background uploader already running sends them"
            elif not book.due(server_url, time.time()) and (
                    isinstance(error, (ServerUnreachable, ServerError)) or spool.acked_seq == 0):
                # a server in backoff that took nothing of this run either: no process that
                # would only wait for it
                how = (f"{server_url} has not answered for a while "
                       f"({book.describe(server_url)}); a later run on this machine sends them when it is due")
            elif spawn_detached(self.uuid, api_key=key if self.api_key_getter else None) is None:
                how = "the background uploader already running sends them"  # started meanwhile
            else:
                how = "a background uploader is sending them now"
        except Exception:
            how = "they will be sent by the next run on this machine"
        return (f"{left} events of this run are not sent yet (they are kept in the spool): "
                f"{how}; `hyperdash sync` sends them too")

    def _close_log(self) -> None:
        if self._log_fd is not None:
            fd, self._log_fd = self._log_fd, None
            try:
                os.close(fd)
            except OSError:
                pass

    # -- events ---------------------------------------------------------------------------
    def write(self, stream: str, data: bytes) -> None:
        """Raw output bytes of ``stream`` (``"stdout"`` or ``"stderr"``): to the log and the
        spool, as lines. Thread-safe; never raises for a problem of its own."""
        if self._detached or self._ended or not data:
            return
        with self._lock:
            if self._ended:  # ended while this thread waited for the lock
                return
            try:
                if self._log_fd is not None:
                    self._write_log(stream, data)
                self._store(stream, self._framers[stream].feed(data))
            except Exception as exc:
                self.warn("write", f"internal error while capturing output: {exc!r}")

    def _write_log(self, stream: str, data: bytes) -> None:
        # Captured apart, the other stream's unfinished line (a progress bar) is ended first,
        # so that this stream's output never reads as the end of that line.
        if self._log_open_line not in (None, stream):
            data = b"\n" + data
        self._log_open_line = None if data.endswith(b"\n") else stream
        fd = self._log_fd
        if fd is None:
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError as exc:
            self._close_log()
            if not self._warn_disk(exc):
                self.warn("log", f"cannot write the run's log file any more: {exc}")

    def param(self, name: str, value: Any, log: bool = True, *, internal: bool = False) -> Any:
        """Record a parameter and return ``value`` unchanged.

        A number, bool or string is recorded as it is; a list, tuple or dict as its JSON text;
        anything else as its ``str()`` (so NaN is recorded as ``"nan"``). ``internal`` marks
        the SDK's own bookkeeping (such as :meth:`Experiment.iter`'s).
        """
        plain = self._param_value(name, value)
        if self._recording(name):
            self._record(PARAM, {"params": {name: plain}, "is_internal": internal})
        if log and self.echo and not self._ended:
            self._echo(f"{{ {name}: {plain} }}")
        return value

    def params(self, values: dict[str, Any], log: bool = True, *, internal: bool = False) -> None:
        """Record several params in one event (names and values as :meth:`param` takes them);
        all of them are checked before any is recorded. ``internal`` as :meth:`param` says."""
        plain = {name: self._param_value(name, value) for name, value in values.items()}
        if plain and self._recording(next(iter(plain))):
            self._record(PARAM, {"params": plain, "is_internal": internal})
        if log and self.echo and not self._ended:
            for name, text in plain.items():
                self._echo(f"{{ {name}: {text} }}")

    def _param_value(self, name: str, value: Any) -> Any:
        """A param's checked name and its value as the wire carries it, long text cut."""
        _check_name(name, "param name")
        plain = _param_value(value)
        if isinstance(plain, str) and len(plain) > MAX_PARAM_TEXT_CHARS:
            self.warn(f"long:{name}", f"param {name!r} is longer than {MAX_PARAM_TEXT_CHARS} "
                                      "characters; its beginning is recorded")
            plain = plain[:MAX_PARAM_TEXT_CHARS]
        return plain

    def metric(self, name: str, value: Any, step: int | None = None, log: bool = True, *,
               internal: bool = False, timestamp: int | None = None) -> Any:
        """Record one point of a metric and return ``value`` unchanged. A metric is a real number:
        an int or a float (numpy's and torch's scalars too), a bool (as 1 or 0), a ``Fraction``
        or a ``Decimal`` (as the nearest float).

        A NaN or infinite value is recorded as the text ``NaN``, ``Infinity`` or ``-Infinity``
        (JSON has no such numbers), which the server's rules see (:meth:`alert`) and charts
        skip: a warning says so, once per metric, and the job goes on. ``internal`` marks the
        SDK's own bookkeeping.
        ``timestamp`` is when it was measured, in milliseconds since the epoch (default: now),
        for points read from elsewhere (TensorBoard's event files).
        """
        _check_name(name, "metric name")
        try:
            plain = _plain(value)
        except TypeError:
            plain = value  # (a Fraction, a Decimal, or no number at all: told apart below)
        if isinstance(plain, bool):
            plain = int(plain)  # (True is 1, as the original SDK recorded it)
        elif not isinstance(plain, (int, float)):
            import decimal  # (here: a millisecond of every job's start, for a rare metric)
            import numbers

            if not isinstance(plain, (numbers.Real, decimal.Decimal)):
                raise TypeError(f"metric {name!r} must be a real number, not {type(value).__name__}")
            plain = _nearest_float(plain)  # a Fraction, a Decimal
        if isinstance(plain, int) and not -_FLOAT_INT_LIMIT < plain < _FLOAT_INT_LIMIT:
            plain = _nearest_float(plain)  # (beyond a float: infinite, as it is charted)
        if step is not None:
            step = _plain(step)
            if isinstance(step, bool) or not isinstance(step, int):
                raise TypeError(f"step must be an integer, not {type(step).__name__}")
        if not math.isfinite(plain):
            self.warn(f"nan:{name}", f"metric {name!r} got {plain}: charts skip it, rules on it see it")
            if self._recording(name):
                self._record(METRIC, {"name": name, "value": nonfinite_text(plain), "timestamp": now_ms(),
                                      "is_internal": internal, "step": step})
        elif self._recording(name):
            measured = now_ms() if timestamp is None else timestamp
            self._record(METRIC, {"name": name, "value": plain, "timestamp": measured,
                                  "is_internal": internal, "step": step})
        if log and self.echo and not self._ended:
            self._echo(f"| {name}: {plain:10f} |" if isinstance(plain, float) else f"| {name}: {plain} |")
        return value

    def alert(self, metric: str, **rule: Any) -> bool:
        """Ask the server to watch ``metric`` with a rule (see :func:`hyperdash.events.check_alert`:
        ``nan=True``, ``above=X``, ``below=X``, or ``patience=N`` and/or ``minutes=M`` with
        ``mode="min"`` or ``"max"``). A malformed rule is said once on stderr and not sent: the
        job goes on. Whether the rule was recorded."""
        try:
            spec = check_alert({"metric": metric, **rule})
        except ValueError as exc:
            self.warn(f"alert:{metric!r}:{rule!r}", f"alert on {metric!r} is not set: {exc}")
            return False
        if not self._recording(metric):
            return False
        self._record(ALERT, spec)
        return True

    def _recording(self, name: str) -> bool:
        """Whether a param or metric is recorded now; in a forked child, says once why not."""
        if self._forked:
            self.warn("fork", f"params and metrics of a forked child process (pid {os.getpid()}) are "
                              f"not recorded, {name!r} neither: the run belongs to the parent process")
        elif self._ended and self._started:
            self.warn("ended", f"the run {self.name!r} has ended: {name!r} is not recorded, nor what "
                               "comes after it")
        return not self._detached and not self._ended

    def _echo(self, line: str) -> None:
        try:
            print(line, file=sys.stdout)
        except Exception:
            pass

    def _record(self, type: str, payload: dict[str, Any]) -> None:
        try:
            # JSON has no NaN: an event that holds one would be refused by the server
            text = json.dumps({"type": type, "payload": payload}, ensure_ascii=False, allow_nan=False)
        except ValueError as exc:
            self.warn(f"json:{type}", f"a {type} event was not recorded: {exc}")
            return
        blob = text.encode("utf-8", "replace")
        with self._lock:
            if self._spool is None:
                return
            seq = self._next_seq
            self._next_seq += 1
            self._spool.append(EVENT, None, seq, 1, now_ms(), blob)
        if self._shipper is not None:
            self._shipper.nudge()

    def _store(self, stream: str, pieces: list[framing.Piece]) -> None:
        if not pieces or self._spool is None:
            return
        timestamp = now_ms()
        records = []
        for kind, blob, count in pieces:
            records.append((kind, stream, self._next_seq, count, timestamp, blob))
            self._next_seq += count
        self._spool.append_all(records)  # (one system call for a read's pieces)
        if self._shipper is not None:
            self._shipper.nudge()

    def keep_unfinished_lines(self) -> None:
        """Store each stream's last line even though it has no newline yet (the process is
        about to end without ending the run). Gives up if the run is busy elsewhere."""
        if self._detached or self._ended or not self._lock.acquire(timeout=1.0):
            return
        try:
            self._store_unfinished_lines()
        except Exception as exc:
            self.warn("write", f"internal error while capturing output: {exc!r}")
        finally:
            self._lock.release()

    def _store_unfinished_lines(self) -> None:
        for stream, framer in self._framers.items():
            self._store(stream, framer.flush())

    def _tick(self) -> None:
        """Called by the shipper at each wake-up: held-back progress states, orphan spools."""
        if self._ended:
            return
        with self._lock:
            for stream, framer in self._framers.items():
                self._store(stream, framer.due_progress())
        self._prune_logs()
        if not self._orphans_checked:
            self._orphans_checked = True
            if self._spool is not None and self._spool.folder is not None and _has_other_entries(
                    self._spool.folder.parent, self.uuid):
                from .uploader import upload_orphans_in_background

                upload_orphans_in_background(exclude=self.uuid)

    def _heard(self, reply: dict[str, Any]) -> None:
        """A reply of the server (on the sending thread): the first stop asked of this run is
        handed to :attr:`on_stop` and said in one line, with what is done about it."""
        asked = reply.get("stop")
        if not isinstance(asked, dict) or self.stop_request is not None or self._ended:
            return
        request = asked.get(self.uuid)
        if request is None:
            return
        self.stop_request = request = request if isinstance(request, dict) else {}
        via = {"dashboard": "the dashboard", "cli": "the command line", "api": "the API"}.get(
            str(request.get("via")), "afar")
        asked_by = f"{request.get('by') or 'someone'} asked this run to stop, from {via}"
        handler = self.on_stop
        if handler is None:
            self.say(f"{asked_by}, but nothing here can stop its job: stop it where it runs")
            return
        try:
            done = handler(request)
        except Exception as exc:  # never the sending thread's problem
            self.say(f"{asked_by}, but the job was not stopped: internal error: {exc!r}")
            return
        self.say(f"{asked_by}: {done or 'stopping the job'}")

    def _prune_logs(self) -> None:
        """Once a run: delete old run logs past the limits (see :mod:`hyperdash.runlogs`)."""
        if self._logs_pruned:
            return
        self._logs_pruned = True
        from . import runlogs

        try:
            runlogs.prune(keep={self.log_path} if self.log_path else frozenset())
        except OSError:
            pass  # an unreadable logs folder: nothing to prune then

    # -- messages -------------------------------------------------------------------------
    def say(self, message: str) -> None:
        """One line on the terminal's stderr (a notebook's: the running cell's), prefixed ``hyperdash:``."""
        text = f"hyperdash: {message}\n"
        if self.console_stream is not None:
            try:
                self.console_stream.write(text)
                self.console_stream.flush()
                return
            except Exception:
                pass
        line = text.encode("utf-8", "replace")
        for fd in (self.console_fd, 2):
            try:
                os.write(fd, line)
                return
            except OSError:
                continue

    def warn(self, key: str, message: str) -> None:
        """:meth:`say` ``message``, once per ``key`` for this run."""
        if key in self._warned:
            return
        self._warned.add(key)
        self.say(message)

    def _warn_disk(self, exc: OSError) -> bool:
        """One line for a full disk, whichever file meets it first; False for another error."""
        if exc.errno not in _DISK_FULL:
            return False
        self.warn("disk", f"cannot write to {config.home_dir()} ({exc.strerror}): events that cannot be "
                          "spooled are sent from memory (bounded), and the local log copy stops there")
        return True

    def _warn_from_shipper(self, key: str, message: str) -> None:
        refused = self._shipper.last_error if self._shipper is not None else None
        if key == "auth" and self._key_source is not None and self._key_source.error:
            if self.quiet_config_errors:
                return  # the caller has said why the key cannot be read
            message = f"no usable API key: {self._key_source.error}; events wait in the spool"
        elif key == "auth" and isinstance(refused, AuthenticationError) and refused.status:  # the server refused it
            refused.key_source = self._key_source.source if self._key_source is not None else None
            message = f"{refused.refused_key()}; events wait in the spool until a valid API key is found"
        self.warn(key, message)

    # -- fork -----------------------------------------------------------------------------
    def _detach_after_fork(self) -> None:
        self._forked = not self._detached and not self._ended
        self._detached = True
        self._lock = threading.RLock()
        self._end_lock = threading.Lock()
        self._shipper = None
        if self._spool is not None:
            self._spool.forget_after_fork()
        self._spool = None
        self._close_log()
