"""The append-only spool of one run: its events on disk, in order, before anything is sent.

``<home>/spool/<run uuid>/`` holds:

- ``events``: records, each a fixed header (kind, stream, first seq, event count, timestamp in
  ms, blob length) and a blob: raw output lines, one piece of a long line, a progress state, or
  a JSON ``{"type", "payload"}`` for the other events. Many lines share one record, so writing
  output costs one ``write`` per chunk whatever the number of lines in it;
- ``cursor``: how far the server has acknowledged the events (``<record offset> <seq>
  <crc32 of the two>``), written at most every ``CURSOR_SAVE_INTERVAL`` seconds and when the
  spool is closed: after a crash a few batches are sent again, which the server stores once.
  Each save overwrites the file's same bytes in place (a file written anew and renamed over
  the old one costs the filesystem milliseconds of CPU, taken from the job); a cursor torn
  by a crash fails its check and counts as none: everything is sent again;
- ``meta.json``: the run's name, face and server, and where its API key came from (never the
  key), for whoever uploads it later;
- ``lock``: ``flock``-ed by the process that owns the run, as long as it lives. A spool whose
  lock can be taken is orphaned: its owner is gone and anyone may upload it;
- ``handed-over``: written by a run that ends with events unsent, just before it lets go of
  the spool: an uploader about to exit waits a moment for such a spool still locked (by its
  owner closing it, or by someone's look at it) rather than leave it to a later run.

When the disk cannot be written (full, say), a spool continues in memory, bounded: the oldest
unsent records are dropped past ``memory_limit`` bytes (and counted in ``.dropped_events``);
:meth:`Spool.unsent` tells the events still waiting on disk from those that only memory holds.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from .config import ensure_home, home_dir

__all__ = ["EVENT", "Record", "Spool", "spool_root", "all_spools", "orphaned_spools", "handed_over_spools"]

EVENT = 0  # a JSON {"type", "payload"} record; the log kinds are those of hyperdash.framing

_HEADER = struct.Struct("<BBQIQI")  # kind, stream, first seq, count, timestamp ms, blob length
STREAM_CODES = {"stdout": 1, "stderr": 2}
STREAM_NAMES = {code: name for name, code in STREAM_CODES.items()}
DEFAULT_MEMORY_LIMIT = 16 * 1024 * 1024
CURSOR_SAVE_INTERVAL = 1.0
CURSOR_BYTES = 64  # a saved cursor, padded: each save covers the last one whole
READ_AHEAD = 256 * 1024  # bytes read at once when records are read in order
HANDED_OVER = "handed-over"


class Record(NamedTuple):
    """One spool record: ``event_count`` events numbered from ``first_seq``."""

    offset: int
    end: int
    kind: int
    stream: str | None
    first_seq: int
    event_count: int  # (not ``count``, which would hide the tuple's method)
    timestamp: int
    blob: bytes

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.event_count - 1


def spool_root() -> Path:
    """The folder that holds every run's spool."""
    return home_dir() / "spool"


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


class Spool:
    """One run's spool; see the module's docstring. Writing is for the owner alone; reading
    and the cursor may be used from another thread of the same process."""

    def __init__(self, folder: Path | None, memory_limit: int = DEFAULT_MEMORY_LIMIT):
        self.folder = folder
        self.memory_limit = memory_limit
        self.dropped_events = 0
        self.on_disk_error: Callable[[OSError], None] | None = None
        self._events_fd: int | None = None
        self._lock_fd: int | None = None
        self._written = 0
        # in-memory continuation: bytes from absolute offset _memory_base on
        self._memory: bytearray | None = None
        self._memory_base = 0
        self._disk_end = 0  # where the memory continuation begins
        self._memory_lock = threading.Lock()
        self._read_fd: int | None = None
        self._cursor_fd: int | None = None
        self.cursor_offset = 0
        self.acked_seq = 0
        self._cursor_saved_at = 0.0
        self._cursor_unsaved = False
        # The seqs this spool's own appends numbered, first and last, while they follow each
        # other (then unsent() counts without reading the records back); None when unknown (a
        # spool opened after its owner, or appends that skipped or repeated a seq).
        self._seqs: tuple[int, int] | None = (0, 0)

    # -- opening ------------------------------------------------------------------------
    @classmethod
    def create(cls, run_uuid: str, meta: dict[str, Any], root: Path | None = None) -> Spool:
        """A new, locked spool on disk. Raises ``OSError`` when the folder cannot be written."""
        if root is None:
            ensure_home()
            root = spool_root()
        root.mkdir(mode=0o700, exist_ok=True)
        folder = root / run_uuid
        folder.mkdir(mode=0o700)
        spool = cls(folder)
        spool._lock_fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if not _try_lock(spool._lock_fd):
            spool.close()
            raise OSError(f"spool {folder} is locked by another process")
        meta_path = folder / "meta.json"
        meta_path.write_text(json.dumps(meta))
        os.chmod(meta_path, 0o600)
        spool._events_fd = os.open(
            folder / "events", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        return spool

    @classmethod
    def in_memory(cls, memory_limit: int = DEFAULT_MEMORY_LIMIT) -> Spool:
        """A spool that lives in memory only (when the disk cannot take one)."""
        spool = cls(None, memory_limit)
        spool._memory = bytearray()
        return spool

    @classmethod
    def open_orphan(cls, folder: Path, wait: float = 0.0) -> Spool | None:
        """The spool in ``folder`` locked for uploading, or ``None`` while its owner lives
        (after waiting up to ``wait`` seconds for it to go)."""
        try:
            lock_fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return None
        deadline = time.monotonic() + wait
        while not _try_lock(lock_fd):
            if time.monotonic() >= deadline:
                os.close(lock_fd)
                return None
            time.sleep(0.05)
        spool = cls(folder)
        spool._lock_fd = lock_fd
        spool._seqs = None  # (written by another process: read them to count)
        try:
            spool._written = os.path.getsize(folder / "events")
        except OSError:
            spool._written = 0
        spool._load_cursor()
        return spool

    def send_elsewhere(self, server: str | None, cursor: tuple[int, int] = (0, 0)) -> None:
        """Make ``server`` the run's server: ``meta.json`` says so from now on, and the cursor
        goes back to the start (that server has none of the events yet), or to ``cursor``
        (offset, last acknowledged seq: where it was for a server sent to before). A spool on
        disk only."""
        folder = self._disk_folder()
        meta = self.meta()
        meta["server"] = server
        tmp = folder / "meta.json.tmp"
        tmp.write_text(json.dumps(meta))
        os.chmod(tmp, 0o600)
        os.replace(tmp, folder / "meta.json")
        self.cursor_offset, self.acked_seq = cursor
        self._write_cursor()

    def meta(self) -> dict[str, Any]:
        """The run's ``meta.json`` (``{}`` when missing or unreadable)."""
        if self.folder is None:
            return {}
        try:
            meta = json.loads((self.folder / "meta.json").read_text())
        except (OSError, ValueError):
            return {}
        return meta if isinstance(meta, dict) else {}

    def _disk_folder(self) -> Path:
        if self.folder is None:
            raise ValueError("this spool lives in memory: it has no folder")
        return self.folder

    # -- writing ------------------------------------------------------------------------
    @property
    def end_offset(self) -> int:
        """The offset just past the last record written."""
        return self._written

    @property
    def on_disk(self) -> bool:
        return self._memory is None

    def append(self, kind: int, stream: str | None, first_seq: int, count: int, timestamp: int,
               blob: bytes | memoryview) -> None:
        """Append one record (one ``write`` call on disk)."""
        self.append_all([(kind, stream, first_seq, count, timestamp, blob)])

    def append_all(self, records: Sequence[tuple[int, str | None, int, int, int, bytes | memoryview]]) -> None:
        """Append records, each ``(kind, stream, first_seq, count, timestamp, blob)``, with one
        ``write`` call on disk for all of them. Where the disk fails partway, the records it took
        whole stay there and the rest go to memory."""
        frames = [(_HEADER.pack(kind, 0 if stream is None else STREAM_CODES.get(stream, 0), first_seq, count,
                                timestamp, len(blob)), blob)
                  for kind, stream, first_seq, count, timestamp, blob in records]
        self._note_seqs(records)
        if self._memory is None:
            written, error = _write_all(self._events_fd, [part for frame in frames for part in frame])
            if error is None:
                self._written += written
                return
            # The records that the disk took whole stay there; the bytes of a torn one after them
            # are the start of that same record, which goes on in memory with the rest.
            whole = 0
            for header, blob in frames:
                size = len(header) + len(blob)
                if written < size:
                    break
                written, whole = written - size, whole + 1
                self._written += size
            frames = frames[whole:]
            self._memory = bytearray()
            self._memory_base = self._disk_end = self._written
            if self.on_disk_error is not None:
                self.on_disk_error(error)
        with self._memory_lock:
            for header, blob in frames:
                self._memory += header
                self._memory += blob
                self._written += len(header) + len(blob)
            if len(self._memory) > self.memory_limit:
                self._drop_oldest()

    def _note_seqs(self, records: Sequence[tuple[int, str | None, int, int, int, bytes | memoryview]]) -> None:
        for _, _, first_seq, count, _, _ in records:
            if self._seqs is None or count <= 0:
                continue
            first, last = self._seqs
            if last and first_seq != last + 1:
                self._seqs = None
            else:
                self._seqs = (first or first_seq, first_seq + count - 1)

    def unsent(self) -> tuple[int, int]:
        """Events beyond the acknowledged cursor: ``(on disk, in memory only)``. Those in
        memory are lost when the process ends; those on disk can be uploaded later."""
        if self._seqs is not None and self._memory is None:
            # (the count of a run's own spool at its end, without reading it all back)
            first, last = self._seqs
            return max(0, last - max(self.acked_seq, first - 1)) if last else 0, 0
        on_disk = in_memory = 0
        for record in self.records(self.cursor_offset, max_bytes=1 << 62, blobs=False):
            count = record.last_seq - max(self.acked_seq, record.first_seq - 1)
            if count <= 0:
                continue
            if self._memory is not None and record.offset >= self._disk_end:
                in_memory += count
            else:
                on_disk += count
        return on_disk, in_memory

    def _drop_oldest(self) -> None:
        memory = self._memory
        if memory is None:
            return
        cut = 0
        while len(memory) - cut > self.memory_limit // 2:
            _, _, _, count, _, length = _HEADER.unpack_from(memory, cut)
            self.dropped_events += count
            cut += _HEADER.size + length
        del memory[:cut]
        self._memory_base += cut
        if self._disk_end <= self.cursor_offset < self._memory_base:
            # past what was dropped; a cursor still on disk stays (those events can be uploaded)
            self.cursor_offset = self._memory_base

    # -- reading ------------------------------------------------------------------------
    def records(self, offset: int, max_bytes: int = 1 << 20, blobs: bool = True) -> Iterator[Record]:
        """Whole records from ``offset`` on, about ``max_bytes`` of them (at least one).
        With ``blobs=False`` only their headers are read (``blob`` is empty)."""
        end = self._written
        read = 0
        # Read ahead in one call: records of one line each (unbuffered output) would otherwise
        # cost two reads each.
        ahead = b""
        ahead_at = offset
        while offset < end and read < max_bytes:
            if self._disk_end <= offset < self._memory_base:
                offset = self._memory_base  # dropped from memory: lost
                continue
            at = offset - ahead_at
            if at + _HEADER.size > len(ahead):
                ahead_at, at = offset, 0
                ahead = self._read(offset, max(min(max_bytes - read, READ_AHEAD), _HEADER.size), end)
                if len(ahead) < _HEADER.size:
                    return  # a record cut short by a crash: nothing valid follows
            kind, code, first_seq, count, timestamp, length = _HEADER.unpack_from(ahead, at)
            next_offset = offset + _HEADER.size + length
            if next_offset > end:
                return
            blob = b""
            if blobs:
                start = at + _HEADER.size
                blob = ahead[start:start + length]
                if len(blob) < length:
                    blob = self._read(offset + _HEADER.size, length, end)
                    if len(blob) < length:
                        return
            yield Record(offset, next_offset, kind, STREAM_NAMES.get(code), first_seq, count, timestamp, blob)
            read += next_offset - offset
            offset = next_offset

    def _read(self, offset: int, size: int, end: int) -> bytes:
        size = min(size, end - offset)
        if self._memory is not None and offset >= self._disk_end:
            with self._memory_lock:
                start = offset - self._memory_base
                return bytes(self._memory[start : start + size]) if start >= 0 else b""
        if self.folder is None:
            return b""
        if self._read_fd is None:
            self._read_fd = os.open(self.folder / "events", os.O_RDONLY | os.O_CLOEXEC)
        return os.pread(self._read_fd, size, offset)

    # -- the acknowledged cursor -----------------------------------------------------------
    def save_cursor(self, offset: int, acked_seq: int) -> None:
        """Remember that every event up to ``acked_seq`` is stored by the server, and that the
        first record not wholly acknowledged starts at ``offset``."""
        self.cursor_offset, self.acked_seq = offset, acked_seq
        if self._memory is not None:
            with self._memory_lock:
                if offset > self._memory_base:
                    del self._memory[: offset - self._memory_base]
                    self._memory_base = offset
        if self.folder is None:
            return
        self._cursor_unsaved = True
        if time.monotonic() - self._cursor_saved_at >= CURSOR_SAVE_INTERVAL:
            self._write_cursor()

    def _write_cursor(self) -> None:
        self._cursor_unsaved = False
        self._cursor_saved_at = time.monotonic()
        try:
            if self._cursor_fd is None:
                self._cursor_fd = os.open(self._disk_folder() / "cursor",
                                          os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            os.pwrite(self._cursor_fd, _cursor_bytes(self.cursor_offset, self.acked_seq), 0)
        except OSError:
            pass  # the server dedups what is sent again; only efficiency is lost

    def _load_cursor(self) -> None:
        try:
            # (one without a check, as earlier versions wrote, counts as none too)
            offset, seq, check = (self._disk_folder() / "cursor").read_text().split()
            if check != _cursor_check(f"{offset} {seq}"):
                raise ValueError("a torn cursor")
            self.cursor_offset, self.acked_seq = int(offset), int(seq)
        except (OSError, ValueError):
            self.cursor_offset, self.acked_seq = 0, 0

    # -- closing ------------------------------------------------------------------------
    def mark_handed_over(self) -> None:
        """Note that the run has ended and leaves its events to an uploader (best effort; see
        :func:`handed_over_spools`)."""
        if self.folder is None:
            return
        try:
            (self.folder / HANDED_OVER).touch(0o600)
        except OSError:
            pass  # only a later run or `hyperdash sync` is left to send them, as before

    def close(self) -> None:
        """Save the cursor, close the files and release the lock (the spool stays for a later
        upload)."""
        if self._cursor_unsaved and self._lock_fd is not None:
            self._write_cursor()
        for name in ("_events_fd", "_read_fd", "_cursor_fd", "_lock_fd"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                try:
                    os.close(fd)
                except OSError:
                    pass

    def remove(self) -> None:
        """Delete the spool (everything in it is stored by the server)."""
        self._cursor_unsaved = False
        if self.folder is not None:
            import shutil  # (here: a job that never removes its spool does not import it)

            shutil.rmtree(self.folder, ignore_errors=True)
        self.close()

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's descriptors without touching its files."""
        self._memory_lock = threading.Lock()
        self._cursor_unsaved = False  # the parent's to save
        self.close()


def _cursor_check(numbers: str) -> str:
    """The check of a saved cursor's ``"<offset> <seq>"``."""
    return f"{zlib.crc32(numbers.encode()):08x}"


def _cursor_bytes(offset: int, seq: int) -> bytes:
    """A saved cursor: ``<offset> <seq> <check>``, padded to :data:`CURSOR_BYTES`."""
    numbers = f"{offset} {seq}"
    return f"{numbers} {_cursor_check(numbers)}".ljust(CURSOR_BYTES - 1).encode() + b"\n"


_IOV_MAX = 1024  # the most buffers one writev takes (Linux)


def _write_all(fd: int | None, parts: list[bytes | memoryview]) -> tuple[int, OSError | None]:
    """Write ``parts`` in order, with one system call where the file takes them all (no copy of
    them); a short write is finished a part at a time. Returns the bytes written and the error
    that stopped the writing, if one did."""
    if fd is None:
        return 0, OSError("spool is closed")
    written = 0
    try:
        for first in range(0, len(parts), _IOV_MAX):
            group = parts[first:first + _IOV_MAX]
            done = os.writev(fd, group)
            written += done
            if done == sum(map(len, group)):
                continue
            for part in group:
                if done >= len(part):
                    done -= len(part)
                    continue
                view = memoryview(part)[done:]
                done = 0
                while view:
                    size = os.write(fd, view)
                    written += size
                    view = view[size:]
    except OSError as exc:
        return written, exc
    return written, None


def all_spools(root: Path | None = None) -> list[Path]:
    """Every spool folder, live or orphaned, oldest first."""
    root = root or spool_root()
    try:
        folders = [p for p in root.iterdir() if p.is_dir()]
    except OSError:
        return []
    return sorted(folders, key=_mtime)


def _mtime(path: Path, missing: float = 0.0) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return missing


def orphaned_spools(root: Path | None = None) -> list[Path]:
    """Spool folders whose owner is gone (their lock is free right now), oldest first."""
    return [folder for folder in all_spools(root) if _is_free(folder) is True]


def handed_over_spools(within: float, root: Path | None = None) -> list[Path]:
    """Spool folders that their run handed over in the last ``within`` seconds and that are
    still locked (their run lets go of them in a moment), oldest first."""
    now = time.time()
    return [folder for folder in all_spools(root)
            if now - _mtime(folder / HANDED_OVER, float("-inf")) <= within and _is_free(folder) is False]


def _is_free(folder: Path) -> bool | None:
    """Whether the spool in ``folder`` is free to take (orphaned); None when it has no lock file."""
    try:
        fd = os.open(folder / "lock", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _try_lock(fd)
    finally:
        os.close(fd)  # also releases the probe's lock
