"""Uploading orphaned spools: runs whose process is gone and whose events are not all sent.

A spool is orphaned when no live process holds its lock (see :mod:`hyperdash.spool`). Each is
sent to the server its run was meant for (``meta.json`` names it, and where the run's API key
came from), from its acknowledged cursor on, and removed once the server holds everything;
running this twice sends nothing twice.

Spools for different servers are independent: a server that does not answer, or refuses a key,
holds back only the spools meant for it (with that key). :class:`ServerBook` remembers, in
``<home>/uploader-servers.json``, since when each failing server has failed and when to try it
again (exponential backoff, longer once it has failed for ``patience`` seconds), so that neither
this process nor the next one retries a dead server in a loop.

``hyperdash sync`` calls :func:`upload_pending`. A run that ends with events unsent hands them
to a detached uploader (what ``python -m hyperdash.uploader --run UUID`` runs); the next run on
the machine starts one when orphaned spools wait for a server that is due.

One detached uploader at a time works on a machine: it holds ``<home>/uploader.lock`` and, before
it exits, takes every spool orphaned meanwhile too, and waits a moment for those that a run has
handed over but still holds (see :func:`~hyperdash.spool.handed_over_spools`). The process that
starts it takes the lock first and hands it over, so that two runs ending together cannot both
start one; one started by hand finds the lock taken and exits at once, leaving its run to the
first. A look at whether an uploader runs takes the lock shared, for an instant: an uploader
holds it exclusively, so that a look is never mistaken for one (and one who wants the lock
waits the look out).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict, cast

from . import config, errors
from .events import REPLAY_HEADER
from .shipper import SpoolSender, jittered
from .spool import Spool, all_spools, handed_over_spools, orphaned_spools, spool_root
from .transport import Transport

__all__ = [
    "UploadSummary",
    "ServerBook",
    "upload_pending",
    "spawn_detached",
    "upload_orphans_in_background",
    "uploader_running",
    "main",
]

# How long the detached uploader keeps trying a server that does not answer (seconds), counted
# from the server's first failure, across processes.
DEFAULT_PATIENCE = 600.0
# Backoff between tries of a failing server: doubling up to SHORT_CAP while within patience,
# then LONG_BACKOFF (the spools wait for `hyperdash sync` or a later run in between).
SHORT_CAP = 60.0
LONG_BACKOFF = 900.0
# How often a waiting uploader looks for newly orphaned spools (seconds).
POLL_INTERVAL = 0.25
# How long an uploader waits for the owner of a spool to let go of it: a run's (``--run``), or
# one handed over by a run that has not let go of it yet (seconds).
OWNER_WAIT = 30.0
# How long one who wants the uploader lock waits out others' looks at it (seconds): a look
# holds it for microseconds.
LOOK_WAIT = 2.0


class UploadSummary:
    """What :func:`upload_pending` did: ``uploaded`` (runs now wholly on the server),
    ``events_sent``, ``failed`` (run uuid -> why it is still in its spool), ``skipped`` (run
    uuid -> why it was not tried: its server is in backoff), ``busy`` (runs whose owner still
    lives), ``group`` (run uuid -> the server, or server and key, whose failure holds it) and
    ``deleted`` (runs deleted on the server meanwhile: their spools are dropped, unsent)."""

    def __init__(self) -> None:
        self.uploaded: list[str] = []
        self.events_sent = 0
        self.failed: dict[str, str] = {}
        self.skipped: dict[str, str] = {}
        self.busy: list[str] = []
        self.group: dict[str, str] = {}
        self.deleted: list[str] = []

    def __repr__(self) -> str:
        return (f"UploadSummary(uploaded={self.uploaded!r}, events_sent={self.events_sent}, "
                f"failed={self.failed!r}, skipped={self.skipped!r}, busy={self.busy!r})")

    @property
    def ok(self) -> bool:
        return not self.failed


class ServerEntry(TypedDict, total=False):
    """What :class:`ServerBook` remembers of one failing server (times in wall-clock seconds)."""

    since: float  # its first failure
    next: float  # when it is due for another try
    failures: int
    error: str  # why it failed last, in words


class ServerBook:
    """How each server (and each server with a given key) has answered lately; see the
    module's docstring. Saving is best effort: without it, a server is only tried sooner."""

    def __init__(self, path: Path, entries: dict[str, ServerEntry] | None = None):
        self.path = path
        self.entries = entries or {}

    @classmethod
    def load(cls) -> ServerBook:
        path = config.home_dir() / "uploader-servers.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = None
        if not isinstance(data, dict):
            data = {}
        # the file is the one save() writes; a damaged one keeps the entries still readable
        entries = {name: cast(ServerEntry, entry) for name, entry in data.items() if isinstance(entry, dict)}
        return cls(path, entries)

    def save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            tmp.write_text(json.dumps(self.entries))
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except OSError:
            pass

    def due(self, name: str, now: float) -> bool:
        entry = self.entries.get(name)
        return entry is None or now >= entry.get("next", 0)

    def next_try(self, name: str) -> float | None:
        entry = self.entries.get(name)
        return entry.get("next") if entry else None

    def given_up(self, name: str, now: float, patience: float) -> bool:
        """Whether ``name`` has failed for ``patience`` seconds or more."""
        entry = self.entries.get(name)
        return entry is not None and now - entry.get("since", now) >= patience

    def failed(self, name: str, error: str, now: float, patience: float) -> None:
        entry = self.entries.setdefault(name, {"since": now, "failures": 0})
        entry["failures"] = failures = entry.get("failures", 0) + 1
        if now - entry.get("since", now) >= patience:
            delay = LONG_BACKOFF
        else:
            # (a bounded exponent: after a thousand failures 2.0 ** failures would overflow)
            delay = min(SHORT_CAP, 2.0 ** min(failures - 1, 32))
        entry["next"] = now + jittered(delay)
        entry["error"] = error
        self.save()

    def succeeded(self, *names: str) -> None:
        if any(self.entries.pop(name, None) is not None for name in names):
            self.save()

    def describe(self, name: str) -> str:
        entry: ServerEntry = self.entries.get(name) or {}
        since = time.strftime("%H:%M:%S", time.localtime(entry.get("since", time.time())))
        after = time.strftime("%H:%M:%S", time.localtime(entry.get("next", time.time())))
        return f"{entry.get('error', 'failed')} (failing since {since}; next try after {after})"


def _key_getter(source: str | None) -> Callable[[], str | None] | None:
    """For a key found in a hyperdash.json: read it from that file first."""
    if not source or source in (config.ENV_SOURCE, config.GETTER_SOURCE):
        return None

    def from_file() -> str | None:
        try:
            return config.load_settings(source).get("api_key")
        except errors.ConfigError:
            return None

    return from_file


def _fingerprint(key: str) -> str:
    import hashlib  # (here: OpenSSL's load is no cost of an uploader's start)

    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _why(exc: errors.HyperdashError, server: str, source: str | None) -> str:
    """Why a run stays in its spool, in words."""
    if isinstance(exc, errors.ServerUnreachable):
        return str(exc)  # "cannot reach URL: connection refused"
    if isinstance(exc, errors.AuthenticationError):
        where = f" (key from {source})" if source else ""
        if exc.status is None:
            return f"no API key: {exc}"
        return f"key refused by {server}{where}: {exc.message}"
    if isinstance(exc, errors.RateLimited):
        return f"{server} asks to slow down: {exc}"
    if isinstance(exc, errors.ServerError):
        return f"{server} failed: {exc}"
    return f"{server}: {exc}"


def upload_pending(
    on_progress: Callable[[str, int, int], None] | None = None,
    run_uuid: str | None = None,
    *,
    server: str | None = None,
    book: ServerBook | None = None,
    honour_backoff: bool = False,
    patience: float = DEFAULT_PATIENCE,
    wait_for_lock: float = 0.0,
    skip: set[str] | frozenset[str] = frozenset(),
    on_wait: Callable[[str], None] | None = None,
) -> UploadSummary:
    """Upload every orphaned spool (or only ``run_uuid``'s) once; see the module's docstring.

    ``on_progress(run_uuid, events_sent, events_total)`` is called after each batch. Each server
    is tried once per call: when it fails, the other runs meant for it (with that key) are not
    tried and fail with the same reason, and the failure goes into ``book``. With
    ``honour_backoff`` a server whose next try is not due yet is not tried (``skipped``).
    ``server`` sends the runs to that server instead (their spools remember it from then on).
    Runs named in ``skip`` are left alone. ``on_wait(run_uuid)`` is called before waiting up to
    ``wait_for_lock`` seconds for a run's owner to let go of its spool.
    """
    summary = UploadSummary()
    if run_uuid is not None:
        folders = [spool_root() / run_uuid]
        if not folders[0].is_dir():
            summary.failed[run_uuid] = "no spool for this run on this machine"
            return summary
    else:
        folders = [folder for folder in all_spools() if folder.name not in skip]
    book = book if book is not None else ServerBook.load()
    failed_now: dict[str, str] = {}  # server, or server and key -> why, in this call
    key_sources: dict[str | None, config.KeySource] = {}
    for folder in folders:
        target = server or _server_of(folder)
        if honour_backoff and not book.due(target, time.time()):
            # not even locked for a look: `hyperdash sync` may take it meanwhile
            summary.skipped[folder.name] = book.describe(target)
            summary.group[folder.name] = target
            continue
        spool = Spool.open_orphan(folder)
        if spool is None and wait_for_lock > 0:
            if on_wait is not None:
                on_wait(folder.name)
            spool = Spool.open_orphan(folder, wait=wait_for_lock)
        if spool is None:
            summary.busy.append(folder.name)
            continue
        try:
            _upload_spool(spool, folder.name, server, book, honour_backoff, patience, failed_now,
                          key_sources, on_progress, summary)
        finally:
            spool.close()
    return summary


def _upload_spool(
    spool: Spool,
    run_uuid: str,
    server: str | None,
    book: ServerBook,
    honour_backoff: bool,
    patience: float,
    failed_now: dict[str, str],
    key_sources: dict[str | None, config.KeySource],
    on_progress: Callable[[str, int, int], None] | None,
    summary: UploadSummary,
) -> None:
    meta = spool.meta()
    target = server or meta.get("server") or config.server_url()
    # A run moved to another server goes with the key configured now (HYPERDASH_API_KEY first,
    # as ever), not with the one its own server took.
    moving = server is not None and meta.get("server") != server
    source = None if moving else meta.get("key_source")
    if source not in key_sources:
        key_sources[source] = config.KeySource(_key_getter(source))
    keys = key_sources[source]
    key = keys.get()
    if not key:  # nothing to try with; the server is not to blame
        summary.failed[run_uuid] = (f"no usable API key: {keys.error}" if keys.error else
                                    "no API key is configured (run `hyperdash login`)")
        return
    groups = [target, f"{target} key {_fingerprint(key)}"]
    now = time.time()
    for group in groups:
        summary.group[run_uuid] = group
        if group in failed_now:
            summary.failed[run_uuid] = failed_now[group] + " (not tried again)"
            return
        if honour_backoff and not book.due(group, now):
            summary.skipped[run_uuid] = book.describe(group)
            return
    moved_from = None
    if moving:
        moved_from = (meta.get("server"), (spool.cursor_offset, spool.acked_seq))
        spool.send_elsewhere(server)
    error = _upload_one(spool, run_uuid, meta, target, keys.get, on_progress, summary)
    if error is not None and moved_from is not None and spool.acked_seq == 0:
        # The new server took none of it: the run stays its old server's, where it was.
        spool.send_elsewhere(*moved_from)
    if isinstance(error, errors.RunDeleted):  # final: the server will never take it
        summary.deleted.append(run_uuid)
        book.succeeded(*groups)
        spool.remove()
        return
    if error is None:
        summary.uploaded.append(run_uuid)
        book.succeeded(*groups)
        spool.remove()
        return
    why = _why(error, target, source or keys.source)
    group = groups[-1] if isinstance(error, errors.AuthenticationError) else target
    summary.failed[run_uuid] = why
    summary.group[run_uuid] = group
    failed_now[group] = why
    book.failed(group, why, time.time(), patience)


def _upload_one(
    spool: Spool,
    run_uuid: str,
    meta: dict[str, Any],
    server: str,
    key: Callable[[], str | None],
    on_progress: Callable[[str, int, int], None] | None,
    summary: UploadSummary,
) -> errors.HyperdashError | None:
    """Send the spool until it is all on the server (None) or the first error (returned)."""
    # the run's process has ended: its events are no sign of life
    transport = Transport(server, api_key=key, headers={REPLAY_HEADER: "1"})
    sender = SpoolSender(spool, transport, run_uuid, meta.get("api") or "monitor")
    sender.use_big_batches()
    total = _count_events(spool) if on_progress is not None else 0  # (a read of the whole spool)
    try:
        while sender.pending():
            try:
                count = sender.send_batch()
            except errors.HyperdashError as exc:
                return exc
            summary.events_sent += count
            if on_progress is not None:
                on_progress(run_uuid, spool.acked_seq, total)
        return sender.gone
    finally:
        transport.close()


def _count_events(spool: Spool) -> int:
    last = spool.acked_seq
    for record in spool.records(spool.cursor_offset, max_bytes=1 << 62, blobs=False):
        last = record.last_seq
    return last


def spawn_detached(run_uuid: str | None = None, api_key: str | None = None) -> int | None:
    """Start an uploader (what ``python -m hyperdash.uploader [--run UUID]`` runs) in its own
    session, detached from this process's terminal and lifetime (its output goes to
    ``<home>/logs/uploader.log``). ``api_key`` is handed over in its environment. Returns its
    pid, or ``None`` when an uploader runs already (it takes this run's spool too).

    The uploader lock is taken here and inherited by the new process, which holds it from its
    first instruction: between a look at the lock and the new uploader's own try, another run
    ending at the same moment would otherwise start a second one.

    ``posix_spawn`` rather than :mod:`subprocess`: a run hands its backlog over as the job
    exits, and importing subprocess and forking through it would cost the job milliseconds.
    """
    try:
        lock_fd: int | None = _take_uploader_lock()
    except OSError:
        lock_fd = -1  # no lock file can be made here: the uploader works without one
    if lock_fd is None:
        return None
    # The job's own import path, after the standard library's: `-S` spares the new interpreter
    # the site-packages scan and its .pth files (tens of milliseconds of CPU where many packages
    # are installed), and the folder it starts in shadows no module of ours.
    here = list(dict.fromkeys(path for path in sys.path if path and isinstance(path, str)))
    options = {"run": run_uuid or None, "lock_fd": _HANDED_LOCK_FD if lock_fd >= 0 else None}
    command = [sys.executable, "-S", "-c", _BOOTSTRAP, json.dumps(here), json.dumps(options)]
    env = dict(os.environ)
    if api_key:
        env["HYPERDASH_API_KEY"] = api_key
    package_parent = str(Path(__file__).resolve().parent.parent)
    # (an empty entry would put the current folder on the path)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    log_folder = config.ensure_home() / "logs"
    log_folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_fd = -1
    try:
        log_fd = _above(os.open(log_folder / "uploader.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                                0o600), 2)
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_DUP2, log_fd, 1), (os.POSIX_SPAWN_DUP2, log_fd, 2)]
        # What subprocess's close_fds does: no descriptor the job let its children inherit
        # (a pipe someone waits to see closed, say) stays open in a long-lived uploader.
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds() if fd > 2]
        if lock_fd >= 0:
            # dup2 onto another number makes a copy that survives exec; the same number would not
            lock_fd = _above(lock_fd, _HANDED_LOCK_FD)
            actions.append((os.POSIX_SPAWN_DUP2, lock_fd, _HANDED_LOCK_FD))
        pid = os.posix_spawn(sys.executable, command, env, file_actions=actions, setsid=True,
                             setsigmask=(), setsigdef=_DEFAULT_SIGNALS)
    finally:
        # The lock stays held by the uploader's copy; without an uploader it is released here.
        for fd in (log_fd, lock_fd):
            if fd >= 0:
                os.close(fd)
    _reap_spawned()
    _spawned.append(pid)
    return pid


_HANDED_LOCK_FD = 3  # where a spawned uploader finds the lock its parent took for it
# What a spawned uploader runs first: the job's import path (its first argument, a JSON list)
# goes after its own, the current folder ("" first, unless PYTHONSAFEPATH is set) out of it;
# then _run_uploader() with its options (the second argument, a JSON object: its parent
# wrote them, so no argparse, whose import and that of gettext cost some 5 ms of CPU). The
# objects its imports make live as long as it does: the garbage collector neither runs during
# the imports nor looks at them afterwards (gc.freeze), which spares it some 10% of its CPU
# (a 16 MB hand-over: 64 -> 58 ms).
_BOOTSTRAP = ("import gc; gc.disable(); import json, sys; "
              "sys.path[:1] = [] if sys.path[:1] == [''] else sys.path[:1]; "
              "sys.path += [p for p in json.loads(sys.argv.pop(1)) if p and p not in sys.path]; "
              "from hyperdash.uploader import _run_uploader; gc.freeze(); gc.enable(); "
              "sys.exit(_run_uploader(**json.loads(sys.argv[1])))")


def _above(fd: int, floor: int) -> int:
    """``fd``, moved (close-on-exec) to a number above ``floor`` when it is not already there."""
    if fd > floor:
        return fd
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor + 1)
    finally:
        os.close(fd)


# Signals Python ignores that a new process should start with their default action (as
# subprocess's restore_signals does).
_DEFAULT_SIGNALS = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, name))
_spawned: list[int] = []  # uploaders started by this process, reaped when they are done


def _reap_spawned() -> None:
    for pid in list(_spawned):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _spawned.remove(pid)


def _inheritable_fds() -> list[int]:
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: the descriptors a process usually has
        fds = list(range(3, 256))
    inheritable = []
    for fd in fds:
        try:
            if os.get_inheritable(fd):
                inheritable.append(fd)
        except OSError:  # closed meanwhile, or the listing's own descriptor
            pass
    return inheritable


def upload_orphans_in_background(exclude: str | None = None) -> bool:
    """Start a detached uploader when orphaned spools (other than ``exclude``) wait for a server
    that is due for a try, and no uploader runs already (the running one takes them)."""
    if not spool_root().is_dir():
        return False
    orphans = [p for p in orphaned_spools() if p.name != exclude]
    if not orphans:
        return False
    book = ServerBook.load()
    now = time.time()
    if not any(book.due(_server_of(folder), now) for folder in orphans):
        return False  # every one waits for a server in backoff: no process to start for them
    return spawn_detached() is not None  # None: the uploader running takes them


def _server_of(folder: Path) -> str:
    try:
        server = json.loads((folder / "meta.json").read_text()).get("server")
    except (OSError, ValueError, AttributeError):
        server = None
    return server or config.server_url()


def _lock_path() -> Path:
    return config.home_dir() / "uploader.lock"


def _take_uploader_lock() -> int | None:
    """The locked descriptor of ``<home>/uploader.lock``, or ``None`` when an uploader holds it
    (others' looks at it are waited out, for ``LOOK_WAIT`` seconds at most). Raises ``OSError``
    when the file cannot be opened."""
    fd = os.open(_lock_path(), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + LOOK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError:
            pass
        if not _only_looked_at(fd) or time.monotonic() > deadline:
            os.close(fd)
            return None
        time.sleep(jittered(0.002))  # (two who want it do not meet again)


def _only_looked_at(fd: int) -> bool:
    """Whether ``fd``'s lock file is held shared only (looks at it, no uploader)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return False
    fcntl.flock(fd, fcntl.LOCK_UN)
    return True


def uploader_running() -> bool:
    """Whether a detached uploader works on this machine now (a shared look at its lock: one
    who takes the lock meanwhile waits for the look to end)."""
    try:
        fd = os.open(_lock_path(), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return False  # no lock file can be made here: none can be held either
    try:
        return not _only_looked_at(fd)
    finally:
        os.close(fd)


def _upload_as_the_only_uploader(run_uuid: str | None, patience: float, log: Callable[[str], None],
                                 handed_lock: int | None = None) -> bool:
    """Upload ``run_uuid`` (first, when given) and every orphaned spool, also those orphaned
    meanwhile, holding the uploader lock, each server with its own backoff; a server that has
    failed for ``patience`` seconds is left, with its spools, to a later try. Returns False when
    a run stays in its spool; True at once when another uploader holds the lock (it takes them
    all instead). ``handed_lock``: the locked descriptor the spawning process handed over."""
    lock_fd: int | None
    if handed_lock is not None and _holds_lock(handed_lock):
        lock_fd = handed_lock
    else:
        try:
            lock_fd = _take_uploader_lock()
        except OSError as exc:
            log(f"working without {_lock_path()}: {exc}")
            lock_fd = -1  # nothing to release
    if lock_fd is None:
        log("another uploader is running on this machine; it takes these runs too")
        return True
    book = ServerBook.load()
    left: dict[str, str] = {}  # run uuid -> why it stays, once its server is given up
    waited: set[str] = set()  # runs handed over whose owner it waits for (said once each)
    try:
        while True:
            if run_uuid is not None:
                summary = upload_pending(run_uuid=run_uuid, book=book, patience=patience, wait_for_lock=OWNER_WAIT,
                                         on_wait=lambda run: log(f"waiting for the process of run {run} to exit"))
                run_uuid = None
            else:
                summary = upload_pending(book=book, honour_backoff=True, patience=patience, skip=set(left))
            _report(summary, log)
            now = time.time()
            for run, why in {**summary.failed, **summary.skipped}.items():
                group = summary.group.get(run)
                if group is None or book.given_up(group, now, patience):
                    left[run] = why
                    log(f"run {run} stays in the spool: {why}")
            if not _orphans_left(set(left), log, waited):
                # A run may hand its spool over between this look and the lock's release, and
                # its uploader then exits at once: look again once the lock is free.
                _release(lock_fd)
                lock_fd = None
                if not _orphans_left(set(left), log, waited):
                    return not left
                try:
                    lock_fd = _take_uploader_lock()
                except OSError:
                    return not left
                if lock_fd is None:
                    return not left  # a newer uploader took over
            elif not summary.uploaded:
                time.sleep(POLL_INTERVAL)  # servers in backoff, or spools someone holds
    finally:
        if lock_fd is not None:
            _release(lock_fd)


def _holds_lock(fd: int) -> bool:
    """Whether ``fd`` is the uploader lock file, locked by this process (flock again on a
    descriptor whose lock it holds succeeds; on another file's, or a closed one, it fails)."""
    try:
        same = os.path.samestat(os.fstat(fd), os.stat(_lock_path()))
        if same:
            os.set_inheritable(fd, False)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return same
    except OSError:
        return False


def _release(lock_fd: int) -> None:
    if lock_fd >= 0:
        os.close(lock_fd)


def _orphans_left(left: set[str], log: Callable[[str], None], waited: set[str]) -> bool:
    """Whether spools other than ``left`` wait: orphaned ones, or ones handed over whose owner
    lets go of them in a moment (told to ``log`` once each)."""
    if any(folder.name not in left for folder in orphaned_spools()):
        return True
    handed = [folder.name for folder in handed_over_spools(OWNER_WAIT) if folder.name not in left]
    for run in handed:
        if run not in waited:
            waited.add(run)
            log(f"waiting for the process of run {run} to exit")
    return bool(handed)


def _report(summary: UploadSummary, log: Callable[[str], None]) -> None:
    if summary.uploaded:
        log(f"uploaded {len(summary.uploaded)} runs, {summary.events_sent} events")
    for run, why in summary.failed.items():
        log(f"run {run} not sent this time: {why}")
    for run in summary.deleted:
        log(f"run {run} was deleted on the server: its spool is dropped")


def main(argv: list[str] | None = None) -> int:
    """``python -m hyperdash.uploader [--run UUID] [--patience SECONDS]``: upload every
    orphaned spool as the only uploader of the machine; 0 once all are on their servers."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hyperdash.uploader", description=__doc__.split("\n")[0])
    parser.add_argument("--run", metavar="UUID",
                        help="upload this run's spool first (waits for its owner to exit), then any other")
    parser.add_argument("--patience", type=float, default=None,
                        help="seconds to keep retrying a server that fails, from its first failure "
                             "(default HYPERDASH_UPLOADER_PATIENCE or 600)")
    parser.add_argument("--lock-fd", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return _run_uploader(args.run, args.lock_fd, args.patience)


def _run_uploader(run: str | None = None, lock_fd: int | None = None, patience: float | None = None) -> int:
    """What :func:`main` does once its arguments are read, and what :func:`spawn_detached`'s
    process runs: ``run``'s spool first, then every other; the uploader lock handed over as
    descriptor ``lock_fd`` (else taken here). Each step goes to stdout, with a last line of
    what the whole took."""
    # A process inherits the signal mask of the thread that started it: spawned from a run's
    # shipper thread under `hyperdash run` (which blocks signals to wait for them), SIGTERM
    # would stay blocked here and could not stop this process.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    if patience is None:
        patience = config.env_float("HYPERDASH_UPLOADER_PATIENCE", DEFAULT_PATIENCE)

    def log(message: str) -> None:
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}", flush=True)

    started = time.monotonic()
    try:
        return 0 if _upload_as_the_only_uploader(run, patience, log, handed_lock=lock_fd) else 1
    finally:
        # what it cost, for whoever wonders what a run's hand-over takes from the machine
        # (getrusage, not os.times: the clock ticks of times() are 10 ms, a good part of the whole)
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        log(f"done in {time.monotonic() - started:.2f}s, {usage.ru_utime + usage.ru_stime:.3f}s of CPU")


if __name__ == "__main__":
    sys.exit(main())
