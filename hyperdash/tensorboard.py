"""``hyperdash tensorboard``: TensorBoard's scalars as runs, followed as they are written.

Every folder under the log folder that holds event files (``events.out.tfevents.*``) is a run
of its own, named ``name`` (the log folder's own name by default), with the params
``tensorboard.logdir`` and ``tensorboard.run`` (the folder, relative to the log folder) telling
them apart; runs of one name sit side by side on that name's page. Each scalar becomes a metric
with its step and the time it was written. Only what is written after the command starts is
sent, unless ``backfill`` imports what is there already.

Event files are read with TensorBoard's own reader (the ``tensorboard`` package), which reads
on from where it stopped as a file grows; a file removed meanwhile (rotated away) is passed over.

A run stopped from afar (the dashboard, ``hyperdash stop``) ends ``user_canceled`` and its
folder is read no more; the other runs go on, and when none is left the command ends. However
the command ends, the runs it started end with it (``failure`` where an error ends it).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .events import FAILURE, STDERR, SUCCESS, USER_CANCELED
from .run import Run

__all__ = ["Follower", "EVENT_FILE_MARK", "DEFAULT_INTERVAL"]

EVENT_FILE_MARK = "tfevents"
DEFAULT_INTERVAL = 2.0
# What TensorBoard calls a scalar summary.
_SCALARS = "scalars"


def _loader_class() -> Any:
    try:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    except ImportError as exc:
        raise ImportError("hyperdash tensorboard needs the tensorboard package: pip install tensorboard") from exc
    return EventFileLoader


class _RunFolder:
    """One folder of event files: its readers, and the run its scalars go to."""

    def __init__(self, folder: Path, relative: str, skip_existing: bool):
        self.folder = folder
        self.relative = relative
        self.loaders: dict[str, Any] = {}
        self.kinds: dict[str, str] = {}  # tag -> plugin name, from the first value that says
        self.skipping = skip_existing  # the first reading only moves past what is there
        self.run: Run | None = None
        self.points = 0
        self.stop_asked = False  # its run was stopped from afar (set on the sending thread)
        self.followed = True  # until then

    def files(self) -> list[Path]:
        try:
            return sorted(p for p in self.folder.iterdir() if EVENT_FILE_MARK in p.name and p.is_file())
        except OSError:
            return []

    def scalars(self, loader_class: Any) -> Iterator[tuple[str, float, int, int]]:
        """New scalars of every event file: (tag, value, step, wall time in ms). A file removed
        meanwhile (rotated away between listing and reading) is passed over."""
        for path in self.files():
            try:
                yield from self._scalars_of(path, loader_class)
            except Exception:
                if path.exists():
                    raise
                self.loaders.pop(path.name, None)  # (TensorBoard's NotFoundError: it is gone)

    def _scalars_of(self, path: Path, loader_class: Any) -> Iterator[tuple[str, float, int, int]]:
        from tensorboard.util import tensor_util

        loader = self.loaders.get(path.name)
        if loader is None:
            loader = self.loaders[path.name] = loader_class(str(path))
        for event in loader.Load():
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                if value.HasField("metadata") and value.metadata.plugin_data.plugin_name:
                    self.kinds.setdefault(value.tag, value.metadata.plugin_data.plugin_name)
                if self.kinds.get(value.tag) != _SCALARS or not value.HasField("tensor"):
                    continue
                number = tensor_util.make_ndarray(value.tensor)
                if number.size != 1:
                    continue
                yield value.tag, float(number.item()), int(event.step), int(event.wall_time * 1000)


class Follower:
    """Reads the event files under ``logdir`` into runs; see the module's docstring.

    ``say`` shows a line to the user; ``run_factory(name)`` makes a run (a started
    :class:`~hyperdash.run.Run` of ``api="cli_tensorboard"`` by default).
    """

    def __init__(self, logdir: Path, name: str | None = None, *, backfill: bool = False,
                 say: Callable[[str], Any] = print, run_factory: Callable[[str], Run] | None = None):
        self.loader_class = _loader_class()
        self.logdir = logdir.resolve()
        if not self.logdir.is_dir():
            raise FileNotFoundError(f"no such folder: {logdir}")
        self.name = name or self.logdir.name or "tensorboard"
        self.backfill = backfill
        self.say = say
        self.run_factory = run_factory or (lambda run_name: Run(run_name, api="cli_tensorboard", echo=False).start())
        self.folders: dict[Path, _RunFolder] = {}
        self.started = False

    def _run_folders(self) -> list[_RunFolder]:
        """Every folder holding event files, those met before first."""
        for root, dirs, files in os.walk(self.logdir):
            dirs.sort()
            folder = Path(root)
            if folder not in self.folders and any(EVENT_FILE_MARK in f for f in files):
                relative = folder.relative_to(self.logdir).as_posix()
                # Folders there at the start have their old events skipped unless backfilled;
                # folders that appear later are new runs, read from their beginning.
                skip = not self.started and not self.backfill
                self.folders[folder] = _RunFolder(folder, relative, skip_existing=skip)
        self.started = True
        return list(self.folders.values())

    @property
    def stopped(self) -> bool:
        """Whether every folder met so far was stopped from afar: nothing is left to follow."""
        return bool(self.folders) and not any(folder.followed for folder in self.folders.values())

    def poll(self) -> int:
        """Read what is new in every event file; the number of points recorded. The run of a
        folder stopped from afar ends ``user_canceled``, and the folder is read no more."""
        recorded = 0
        for folder in self._run_folders():
            if folder.stop_asked and folder.followed:
                folder.followed = False
                if folder.run is not None:
                    folder.run.end(USER_CANCELED)
            if not folder.followed:
                continue
            for tag, value, step, timestamp in folder.scalars(self.loader_class):
                if folder.skipping:
                    continue
                if folder.run is None:
                    folder.run = self._start_run(folder)
                folder.run.metric(tag, value, step=step, log=False, timestamp=timestamp)
                folder.points += 1
                recorded += 1
            folder.skipping = False
        return recorded

    def _start_run(self, folder: _RunFolder) -> Run:
        run = self.run_factory(self.name)
        run.on_stop = lambda request: self._stop_asked(folder)
        run.params({"tensorboard.logdir": str(self.logdir), "tensorboard.run": folder.relative}, log=False,
                   internal=True)  # (where the points come from, not the job's progress)
        self.say(f"hyperdash: {folder.relative} is the run {self.name!r} ({run.uuid})")
        return run

    def _stop_asked(self, folder: _RunFolder) -> str:
        """A stop of ``folder``'s run (on the sending thread), carried out at the next poll; the
        other folders go on, unless there is none: then the command ends. What is done, in words."""
        folder.stop_asked = True
        if any(other.followed and not other.stop_asked for other in list(self.folders.values())):
            return f"ending this run and no longer following {folder.relative}; the other runs go on"
        return "ending this run, the only one followed: hyperdash tensorboard ends"

    def follow(self, stop: threading.Event, interval: float = DEFAULT_INTERVAL) -> None:
        """Poll until ``stop`` is set (then once more, for what came last), or until every
        folder was stopped from afar."""
        while True:
            self.poll()
            if self.stopped:
                return
            if stop.wait(interval):
                self.poll()
                return

    def send(self, stop: threading.Event | None, interval: float = DEFAULT_INTERVAL) -> None:
        """Follow until ``stop`` is set (``None``: read what is there, once), then end every run
        started: ``success``, or ``failure`` where an error ends the command, which goes on up."""
        try:
            if stop is None:
                self.poll()
            else:
                self.follow(stop, interval)
        except BaseException as exc:
            self.end(FAILURE, why=f"ended by an error: {exc!r}")
            raise
        self.end()

    def end(self, status: str = SUCCESS, why: str | None = None) -> None:
        """End every run that was started and still goes on, ``success`` by default: the follow
        is over. ``why``: a line for each run's log, saying why it ends."""
        for folder in self.folders.values():
            if folder.run is not None:
                if why:
                    folder.run.write(STDERR, f"hyperdash tensorboard: {why}\n".encode("utf-8", "replace"))
                folder.run.end(status)
        runs = sum(folder.run is not None for folder in self.folders.values())
        points = sum(folder.points for folder in self.folders.values())
        # (recorded: each run says itself what it could not send yet)
        self.say(f"hyperdash: {points} points recorded in {runs} run{'' if runs == 1 else 's'}")
