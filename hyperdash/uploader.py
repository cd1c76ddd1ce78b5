"""Uploading orphaned spools: runs whose process is gone and whose events are not all sent.

A spool is orphaned when no live process holds its lock (see :mod:`hyperdash.spool`). Each is
sent to the server its run was meant for, from its acknowledged cursor on, and removed once the
server holds everything; running this twice sends nothing twice.

``hyperdash sync`` calls :func:`upload_pending`. A run that ends with events unsent hands them
to a detached ``python -m hyperdash.uploader --run UUID``; the next run on the machine starts a
detached ``python -m hyperdash.uploader`` for whatever else is left.

One detached uploader at a time works on a machine: it holds ``<home>/uploader.lock`` and, before
it exits, takes every spool orphaned meanwhile too; a second one finds the lock taken and exits
at once, leaving its run to the first.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable

from . import config, errors
from .shipper import Backoff, SpoolSender
from .spool import Spool, all_spools, orphaned_spools, spool_root
from .transport import Transport

__all__ = [
    "UploadSummary",
    "upload_pending",
    "spawn_detached",
    "upload_orphans_in_background",
    "uploader_running",
    "main",
]

# How long the detached uploader keeps trying a server that does not answer (seconds).
DEFAULT_PATIENCE = 600.0


class UploadSummary:
    """What :func:`upload_pending` did: ``uploaded`` (runs now wholly on the server),
    ``events_sent``, ``failed`` (run uuid -> why it is still in its spool) and ``busy`` (runs
    whose owner still lives)."""

    def __init__(self) -> None:
        self.uploaded: list[str] = []
        self.events_sent = 0
        self.failed: dict[str, str] = {}
        self.busy: list[str] = []

    def __repr__(self) -> str:
        return (f"UploadSummary(uploaded={self.uploaded!r}, events_sent={self.events_sent}, "
                f"failed={self.failed!r}, busy={self.busy!r})")

    @property
    def ok(self) -> bool:
        return not self.failed


def upload_pending(
    on_progress: Callable[[str, int, int], None] | None = None,
    run_uuid: str | None = None,
    *,
    patience: float = 0.0,
    wait_for_lock: float = 0.0,
    skip: set[str] | frozenset[str] = frozenset(),
) -> UploadSummary:
    """Upload every orphaned spool (or only ``run_uuid``'s); see the module's docstring.

    ``on_progress(run_uuid, events_sent, events_total)`` is called after each batch.
    A server that fails is retried, with backoff, for ``patience`` seconds without progress;
    then the run is reported in ``summary.failed`` and stays in its spool. Runs named in
    ``skip`` are left alone.
    """
    summary = UploadSummary()
    if run_uuid is not None:
        folders = [spool_root() / run_uuid]
        if not folders[0].is_dir():
            summary.failed[run_uuid] = "no spool for this run on this machine"
            return summary
    else:
        folders = [folder for folder in all_spools() if folder.name not in skip]
    unreachable: dict[str, str] = {}
    key_source = config.KeySource()
    for folder in folders:
        spool = Spool.open_orphan(folder, wait=wait_for_lock)
        if spool is None:
            summary.busy.append(folder.name)
            continue
        try:
            meta = spool.meta()
            server = meta.get("server") or config.server_url()
            if server in unreachable:
                summary.failed[folder.name] = unreachable[server]
                continue
            error = _upload_one(spool, folder.name, meta, server, key_source, patience, on_progress, summary)
            if error is None:
                summary.uploaded.append(folder.name)
                spool.remove()
            else:
                summary.failed[folder.name] = str(error)
                if isinstance(error, errors.ServerUnreachable):
                    unreachable[server] = str(error)
        finally:
            spool.close()
    return summary


def _upload_one(spool, run_uuid, meta, server, key_source, patience, on_progress, summary):
    transport = Transport(server, api_key=key_source.get)
    sender = SpoolSender(spool, transport, run_uuid, meta.get("api") or "monitor")
    total = _count_events(spool)
    sent = spool.acked_seq
    backoff = Backoff(cap=30.0)
    last_progress = time.monotonic()
    try:
        while sender.pending():
            try:
                count = sender.send_batch()
            except errors.HyperdashError as exc:
                if isinstance(exc, errors.APIError) or time.monotonic() - last_progress >= patience:
                    return exc
                delay = getattr(exc, "retry_after", None) or backoff.next_delay()
                if isinstance(exc, errors.AuthenticationError):
                    delay = max(delay, min(key_source.refresh_seconds, 60.0))
                time.sleep(min(delay, max(0.0, patience - (time.monotonic() - last_progress)) + 0.01))
                continue
            backoff.reset()
            last_progress = time.monotonic()
            sent = spool.acked_seq
            summary.events_sent += count
            if on_progress is not None:
                on_progress(run_uuid, sent, total)
        return None
    finally:
        transport.close()


def _count_events(spool: Spool) -> int:
    last = spool.acked_seq
    for record in spool.records(spool.cursor_offset, max_bytes=1 << 62, blobs=False):
        last = record.last_seq
    return last


def spawn_detached(run_uuid: str | None = None, api_key: str | None = None) -> int:
    """Start ``python -m hyperdash.uploader [--run UUID]`` in its own session, detached from
    this process's terminal and lifetime (its output goes to ``<home>/logs/uploader.log``).
    ``api_key`` is handed over in its environment. Returns its pid.

    ``posix_spawn`` rather than :mod:`subprocess`: a run hands its backlog over as the job
    exits, and importing subprocess and forking through it would cost the job milliseconds.
    """
    command = [sys.executable, "-m", "hyperdash.uploader"]
    if run_uuid:
        command += ["--run", run_uuid]
    env = dict(os.environ)
    if api_key:
        env["HYPERDASH_API_KEY"] = api_key
    package_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = package_parent + os.pathsep + env.get("PYTHONPATH", "")
    log_folder = config.ensure_home() / "logs"
    log_folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_fd = os.open(log_folder / "uploader.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    if log_fd <= 2:  # the job had closed a standard descriptor: keep clear of 0, 1 and 2
        log_fd, low = fcntl.fcntl(log_fd, fcntl.F_DUPFD_CLOEXEC, 3), log_fd
        os.close(low)
    try:
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_DUP2, log_fd, 1), (os.POSIX_SPAWN_DUP2, log_fd, 2)]
        # What subprocess's close_fds does: no descriptor the job let its children inherit
        # (a pipe someone waits to see closed, say) stays open in a long-lived uploader.
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds() if fd > 2]
        pid = os.posix_spawn(sys.executable, command, env, file_actions=actions, setsid=True,
                             setsigmask=(), setsigdef=_DEFAULT_SIGNALS)
    finally:
        os.close(log_fd)
    _reap_spawned()
    _spawned.append(pid)
    return pid


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
    """Start a detached uploader when orphaned spools (other than ``exclude``) exist and no
    uploader runs already (the running one takes them before it exits)."""
    if not spool_root().is_dir():
        return False
    if not [p for p in orphaned_spools() if p.name != exclude]:
        return False
    if uploader_running():
        return False
    spawn_detached()
    return True


def _lock_path() -> Path:
    return config.home_dir() / "uploader.lock"


def _take_uploader_lock() -> int | None:
    """The locked descriptor of ``<home>/uploader.lock``, or ``None`` when an uploader holds it.
    Raises ``OSError`` when the file cannot be opened."""
    fd = os.open(_lock_path(), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def uploader_running() -> bool:
    """Whether a detached uploader works on this machine now."""
    try:
        fd = _take_uploader_lock()
    except OSError:
        return False  # no lock file can be made here: none can be held either
    if fd is None:
        return True
    os.close(fd)  # also releases the probe's lock
    return False


def _upload_as_the_only_uploader(run_uuid: str | None, patience: float, log: Callable[[str], None]) -> bool:
    """Upload ``run_uuid`` (first, when given) and every orphaned spool, also those orphaned
    meanwhile, holding the uploader lock. Returns False when a run stays in its spool; True at
    once when another uploader holds the lock (it takes them all instead)."""
    try:
        lock_fd = _take_uploader_lock()
    except OSError as exc:
        log(f"working without {_lock_path()}: {exc}")
        lock_fd = -1  # nothing to release
    if lock_fd is None:
        log("another uploader is running on this machine; it takes these runs too")
        return True
    ok = True
    given_up: set[str] = set()
    try:
        while True:
            if run_uuid is not None:
                summary = upload_pending(run_uuid=run_uuid, patience=patience, wait_for_lock=30.0)
                given_up.add(run_uuid)
                run_uuid = None
            else:
                summary = upload_pending(patience=patience, skip=given_up)
            ok = _report(summary, log) and ok
            given_up.update(summary.failed)
            if not summary.uploaded and not summary.failed:
                time.sleep(0.2)  # only spools that someone else holds right now: no spinning
            if not _orphans_left(given_up):
                # A run may hand its spool over between this look and the lock's release, and
                # its uploader then exits at once: look again once the lock is free.
                _release(lock_fd)
                lock_fd = None
                if not _orphans_left(given_up):
                    return ok
                try:
                    lock_fd = _take_uploader_lock()
                except OSError:
                    return ok
                if lock_fd is None:
                    return ok  # a newer uploader took over
    finally:
        if lock_fd is not None:
            _release(lock_fd)


def _release(lock_fd: int) -> None:
    if lock_fd >= 0:
        os.close(lock_fd)


def _orphans_left(given_up: set[str]) -> bool:
    return any(folder.name not in given_up for folder in orphaned_spools())


def _report(summary: UploadSummary, log: Callable[[str], None]) -> bool:
    if summary.uploaded or summary.failed:
        log(f"uploaded {len(summary.uploaded)} runs, {summary.events_sent} events")
    for run_uuid, why in summary.failed.items():
        log(f"run {run_uuid} stays in the spool: {why}")
    return summary.ok


def main(argv: list[str] | None = None) -> int:
    import argparse

    # A process inherits the signal mask of the thread that started it: spawned from a run's
    # shipper thread under `hyperdash run` (which blocks signals to wait for them), SIGTERM
    # would stay blocked here and could not stop this process.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])

    parser = argparse.ArgumentParser(prog="python -m hyperdash.uploader", description=__doc__.split("\n")[0])
    parser.add_argument("--run", metavar="UUID", help="upload this run's spool only (waits for its owner to exit)")
    parser.add_argument("--patience", type=float, default=None,
                        help="seconds to keep retrying a failing server (default HYPERDASH_UPLOADER_PATIENCE or 600)")
    args = parser.parse_args(argv)
    patience = args.patience if args.patience is not None else config.env_float(
        "HYPERDASH_UPLOADER_PATIENCE", DEFAULT_PATIENCE)

    def log(message: str) -> None:
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}", flush=True)

    return 0 if _upload_as_the_only_uploader(args.run, patience, log) else 1


if __name__ == "__main__":
    sys.exit(main())
