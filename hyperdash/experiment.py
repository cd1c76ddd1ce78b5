"""``Experiment``: a monitored run driven from code, with params, metrics and a final status.

::

    with Experiment("dogs vs. cats") as exp:
        lr = exp.param("learning rate", 0.01)
        for step in exp.iter(1000):
            exp.metric("loss", 1 / (step + 1), step=step)
        exp.log("done training")

One experiment at a time captures a process's output. One that lives within a call or a cell
(``@monitor``'s, a ``%%monitor_cell``'s, a Lightning logger's: :func:`scoped_experiment`) takes
the capture from the one before, which goes on recording params and metrics, and gives it back
as it ends. A plain one that starts while an older plain one still captures (in a notebook,
re-running the cell that creates it) ends that one ``success`` first, and one line says so.

An experiment that is never ended ends when the interpreter exits: ``failure`` after an
uncaught exception (whose traceback is in the log), or ``sys.exit``, ``exit`` or ``quit`` with a
non-zero code (the code kept), ``user_canceled`` after Ctrl-C, else ``success``. (A ``raise
SystemExit(n)`` written out is not seen: the interpreter tells no one its code.) In an IPython
shell, where a cell's ``sys.exit`` or exception ends the cell and not the process, only the
shell's exit ends it: ``success``. SIGTERM and SIGHUP, when the
program has no handler of its own for them, record ``killed`` and then end the process as the
signal would have.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType, MethodType, TracebackType
from typing import Any, NoReturn, cast

from .capture import capture_for_current_process
from .events import FAILURE, KILLED, SUCCESS, USER_CANCELED
from .run import Run

__all__ = ["Experiment", "Callbacks", "status_of_exception", "scoped_experiment"]

# How long an interrupted notebook cell has to end its run itself, before a stop ends it.
_CELL_END_S = 2.0
# Ending the process by default, these signals end the run as ``killed`` first.
_ENDING_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
# How often exp.iter() records its progress, at most (seconds), as the original SDK did.
ITER_METRIC_INTERVAL = 1.0

# The open experiments that capture this process's output (at most one once a new one starts).
_capturing: list[Experiment] = []
_capturing_lock = threading.Lock()

_SYS_EXIT = sys.exit  # (the interpreter's own, to fall back on)


# The signal mask of a thread forking while our handlers are in place (see _hold_ending_signals).
_forking = threading.local()


def _ours(handler: object) -> bool:
    return isinstance(handler, MethodType) and handler.__func__ is Experiment._on_ending_signal


def _hold_ending_signals() -> None:
    """Before a fork, while our handlers are in place: block the ending signals in the forking
    thread. A forked child (a pool's or a data loader's worker) starts with its parent's Python
    handlers, and Python drops a signal that a child gets before it has set itself up: a pool's
    terminate(), sent to a worker that had just started, went unheard, and the pool's exit
    waited for that worker forever. Blocked, the signal waits until the child has the default
    handling back (see :func:`_release_ending_signals`)."""
    if any(_ours(signal.getsignal(signum)) for signum in _ENDING_SIGNALS):
        _forking.mask = signal.pthread_sigmask(signal.SIG_BLOCK, _ENDING_SIGNALS)


def _release_ending_signals(child: bool = False) -> None:
    """After a fork: in a child, whose copy of the run is inert, the ending signals are handled
    as before the run again; then, in parent and child, the mask is what it was."""
    if child:
        for signum in _ENDING_SIGNALS:
            try:
                handler = signal.getsignal(signum)
                if _ours(handler):
                    owner = cast(Experiment, handler.__self__)  # type: ignore[union-attr]
                    signal.signal(signum, owner._previous_handlers.get(signum, signal.SIG_DFL))
            except (ValueError, OSError):
                pass
    mask, _forking.mask = getattr(_forking, "mask", None), None
    if mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # (a signal held meanwhile comes now)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_hold_ending_signals, after_in_parent=_release_ending_signals,
                        after_in_child=lambda: _release_ending_signals(child=True))

ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], Any]


def status_of_exception(exc: BaseException | None) -> tuple[str, int | None]:
    """The final status (and exit code) of a run that ``exc`` ended (``None``: it returned)."""
    if exc is None:
        return SUCCESS, None
    if isinstance(exc, KeyboardInterrupt):
        return USER_CANCELED, None
    if isinstance(exc, SystemExit):
        code = _exit_status(exc.code)
        return (SUCCESS, 0) if code == 0 else (FAILURE, code)
    return FAILURE, None


def _exit_status(code: Any) -> int:
    """The status a process exits with after ``SystemExit(code)``, as the interpreter makes it:
    None 0, an integer (a bool too) taken modulo 256 (255 where it overflows a C long, as
    ``sys.exit(2**70)``), anything else (a message) 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code % 256 if -(2**63) <= code < 2**63 else 255
    return 1


class Experiment:
    """One monitored run of Python code; see the module's docstring.

    The positional arguments are those of the original SDK: ``Experiment(name,
    api_key_getter=None, capture_io=True)``. ``api_key_getter`` is called, about every
    5 minutes, for the API key. ``capture_io=False`` captures no output, but params, metrics,
    :meth:`log` lines and the status still flow.
    ``echo=False`` stops showing params and metrics in the terminal. ``exit_timeout`` bounds
    the flush when the experiment ends (default ``HYPERDASH_EXIT_TIMEOUT``, else 3 seconds).
    ``stall_after`` (seconds, or text such as ``"10m"``; 0 never) is how long the job may record
    nothing (no output, metric or param) before the server marks the run stalled; by default
    the server's window applies.
    ``system_metrics=False`` records no system metrics (CPU, memory, disk, network, GPUs; on
    unless ``HYPERDASH_SYSTEM_METRICS=0``), sampled every ``system_metrics_interval`` seconds
    (default ``HYPERDASH_SYSTEM_METRICS_INTERVAL``, else 10): see :mod:`hyperdash.sysmetrics`.
    """

    def __init__(
        self,
        name: str,
        api_key_getter: Callable[[], str | None] | None = None,
        capture_io: bool = True,
        *,
        echo: bool = True,
        exit_timeout: float | None = None,
        api: str = "experiment",
        stall_after: float | str | None = None,
        system_metrics: bool | None = None,
        system_metrics_interval: float | None = None,
    ):
        if system_metrics_interval is not None:
            from .sysmetrics import interval_setting

            interval_setting(system_metrics_interval)  # a bad one is refused before the run starts
        if api_key_getter is not None and not callable(api_key_getter):
            raise TypeError("api_key_getter must be a function that returns the API key, not "
                            f"{type(api_key_getter).__name__} (capture_io is the third argument)")
        self.name = name
        self._pid = os.getpid()
        self._ended = False
        self._end_lock = threading.Lock()
        self._ended_event = threading.Event()  # set with _ended, for a stop that waits on it
        self._scoped = getattr(_creating, "scoped", False)
        # (before the run starts: the line it says as it starts is not the older run's output)
        suspended = _make_room(self) if capture_io else []
        try:
            self._run = Run(name, api=api, api_key_getter=api_key_getter, echo=echo, exit_timeout=exit_timeout,
                            stall_after=stall_after)
            self._run.start()
        except BaseException:
            for exp in suspended:
                exp._resume()
            raise
        self._capture = None
        if capture_io:
            try:
                self._capture = capture_for_current_process(self._run).start()
            except Exception as exc:  # never the job's problem
                self._run.warn("capture", f"output is not captured: {exc!r}")
        if self._capture is not None:
            with _capturing_lock:
                _capturing.append(self)  # (the last one captures; those before it are suspended)
        from .sysmetrics import start_for

        self._sampler = start_for(self._run, flag=system_metrics, interval=system_metrics_interval)
        self._exit_status: tuple[str, int | None] | None = None
        self._previous_excepthook: ExceptHook | None = None
        self._previous_exit: Callable[..., NoReturn] | None = None
        self._previous_handlers: dict[int, Any] = {}
        self._previous_quitters: dict[str, Any] = {}
        self._last_value_before: Any = None  # sys.last_value as it was before the run
        self._iterators = 0
        self.callbacks = Callbacks(self)
        self._install_hooks()
        self._run.on_stop = self._on_stop

    # -- the public API -------------------------------------------------------------------
    @property
    def run_uuid(self) -> str:
        """The run's id, as the server knows it."""
        return self._run.uuid

    @property
    def captures_output(self) -> bool:
        """Whether this experiment captures the process's output (until it ends)."""
        return self._capture is not None and not self._ended

    @property
    def log_path(self) -> Path | None:
        """The plain-text log of the run's output on this machine."""
        return self._run.log_path

    def param(self, name: str, value: Any, log: bool = True) -> Any:
        """Record a hyperparameter and return ``value``: a number, bool or string as it is, a
        list or dict as its JSON text, anything else as its ``str()``. ``log=False`` does not
        show it in the terminal."""
        return self._run.param(name, value, log=log)

    def params(self, values: Any, log: bool = True) -> dict[str, Any]:
        """Record many hyperparameters at once, in one event, and return them as recorded: a
        dict (nested dicts flattened with dots: ``{"optim": {"lr": 0.1}}`` is ``optim.lr``), an
        ``argparse.Namespace`` or a dataclass instance. Values are taken as :meth:`param`
        takes them. Anything else raises TypeError, and nothing is recorded. A name given twice
        (``"a.b"`` beside ``{"a": {"b": ...}}``) is said once on stderr; the last value stands."""
        from .params import flatten

        def said_twice(name: str) -> None:
            self._run.warn(f"param-twice:{name}", f"param {name!r} is given twice; the last value is recorded")

        flat = {str(name): value for name, value in flatten(values, on_twice=said_twice).items()}
        self._run.params(flat, log=log)
        return flat

    def metric(self, name: str, value: Any, step: int | None = None, log: bool = True) -> Any:
        """Record one point of a metric (a number) and return ``value``. ``log=False`` does
        not show it in the terminal."""
        return self._run.metric(name, value, step=step, log=log)

    def alert(self, metric: str, *, nan: bool = False, above: float | None = None, below: float | None = None,
              patience: int | None = None, minutes: float | None = None, mode: str | None = None) -> bool:
        """Have the server watch a metric and say so (on the run's page, in notifications)
        when it goes wrong; the metric need not exist yet. One of:

        - ``nan=True``: a value is NaN or infinite;
        - ``above=X`` / ``below=X``: a value is past a threshold;
        - ``patience=N`` and/or ``minutes=M``: no improvement for N points or M minutes, where
          ``mode="min"`` (the default) means lower is better and ``mode="max"`` higher.

        A rule fires once, and again only after the metric recovered. A malformed rule is
        said once on stderr and not set; the job goes on. Returns whether it was set."""
        rule: dict[str, object] = {"nan": nan}
        for key, value in (("above", above), ("below", below), ("patience", patience), ("minutes", minutes),
                           ("mode", mode)):
            if value is not None:
                rule[key] = value
        return self._run.alert(metric, **rule)

    def iter(self, n: int, log: bool = True) -> Iterator[int]:
        """``range(n)`` that records the run's progress through it: the count as the internal
        param ``hd_iter_K_epochs`` and the current index as the internal metric ``hd_iter_K``
        (at most once a second, and the last one always); ``log`` shows
        ``| Iteration i of n-1 |`` for each."""
        number = self._iterators
        self._iterators += 1
        return self._iterate(n, f"hd_iter_{number}", log)

    def _iterate(self, n: int, name: str, log: bool) -> Iterator[int]:
        self._run.param(f"{name}_epochs", n, log=False, internal=True)
        recorded_at = None
        for i in range(n):
            if log:
                self._print(f"| Iteration {i} of {n - 1} |")
            now = time.monotonic()
            if recorded_at is None or now - recorded_at >= ITER_METRIC_INTERVAL or i == n - 1:
                self._run.metric(name, i, log=False, internal=True)
                recorded_at = now
            yield i

    def log(self, text: Any) -> None:
        """Print one line into the run's log (and the terminal), also when ``capture_io=False``
        leaves the rest of the output out of it."""
        line = str(text)
        self._print(line)  # captured like any output, when the output is captured
        if not self.captures_output and not self._ended:
            self._run.write("stdout", (line + "\n").encode("utf-8", "replace"))

    def _print(self, line: str) -> None:
        try:
            print(line, file=sys.stdout, flush=True)
        except Exception:
            pass

    def end(self) -> None:
        """End the run with ``success``. Calling it again does nothing."""
        self._finish(SUCCESS)

    def __enter__(self) -> Experiment:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.end_with_exception(exc)  # the exception, if any, goes on

    # -- ending ---------------------------------------------------------------------------
    def end_with_exception(self, exc: BaseException | None, *, log_traceback: bool = True) -> None:
        """End the run with the status ``exc`` means; a failure's traceback goes to the log
        (the terminal shows it when the exception reaches the top, as always).

        ``log_traceback=False`` leaves the traceback out of the log, for a caller that knows
        it is printed to the captured output anyway (an interactive shell's own report).
        """
        status, exit_code = status_of_exception(exc)
        text = None
        if status == FAILURE and log_traceback and exc is not None and not isinstance(exc, SystemExit):
            text = _traceback_text(exc)
        self._finish(status, exit_code, traceback_text=text)

    def _finish(self, status: str, exit_code: int | None = None, signum: int | None = None,
                traceback_text: str | None = None, exiting: bool = False, hand_back: bool = True) -> None:
        if self._run.stop_request is not None:
            # However the job took the stop (it caught the KeyboardInterrupt and returned, or
            # exited 1 as Lightning does), it ended because someone stopped it.
            status = USER_CANCELED
        with self._end_lock:
            if self._ended:
                return
            self._ended = True
            self._ended_event.set()
        with _capturing_lock:
            # (the one it took the capture from, where it was the one capturing: it gets it back)
            resume = None
            if self in _capturing:
                if hand_back and _capturing[-1] is self and len(_capturing) > 1:
                    resume = _capturing[-2]
                _capturing.remove(self)
        if self._sampler is not None:
            # Told now, waited for below: its thread wakes to end while the output is taken.
            self._sampler.stop(timeout=0)
        try:
            if self._capture is not None:
                self._capture.stop()
            if traceback_text:
                self._run.write("stderr", traceback_text.encode("utf-8", "replace"))
        except Exception as exc:
            self._run.warn("capture", f"internal error while stopping the capture: {exc!r}")
        if self._sampler is not None:
            self._sampler.stop()  # (no sample may come after the run's end)
        try:
            self._run.end(status, exit_code=exit_code, signal=signum)
        except KeyboardInterrupt:
            # Ctrl-C while the run's last events were being sent: the wait ends there (what is
            # left is spooled, and the run said so), and the program gets its interrupt from the
            # end's call (not from deep in the wait, chained to it), unless it is exiting already.
            if not exiting:
                raise KeyboardInterrupt from None
        finally:
            self._remove_hooks()
            if resume is not None:  # (after the run's last lines, which are not the older run's)
                resume._resume()

    def _suspend(self) -> None:
        """Give the capture up to a newer experiment, until it ends (see :func:`_make_room`)."""
        capture, self._capture = self._capture, None
        if capture is not None:
            try:
                capture.stop()
            except Exception as exc:
                self._run.warn("capture", f"internal error while stopping the capture: {exc!r}")

    def _resume(self) -> None:
        """Capture the output again, the newer experiment that had it having ended."""
        if self._ended or self._capture is not None:
            return
        try:
            self._capture = capture_for_current_process(self._run).start()
        except Exception as exc:  # never the job's problem
            self._run.warn("capture", f"output is not captured any more: {exc!r}")

    def _end_superseded(self, successor: str) -> None:
        self._finish(SUCCESS, hand_back=False)  # (the successor takes the capture)
        self._run.say(f"the run {self.name!r} was ended (success) because a new Experiment, "
                      f"{successor!r}, started capturing the output")

    # -- interpreter hooks ----------------------------------------------------------------
    def _install_hooks(self) -> None:
        atexit.register(self._at_exit)
        if _interactive_shell():
            _watch_cells()
        else:  # (in a shell a cell's exception or sys.exit ends the cell alone)
            self._last_value_before = getattr(sys, "last_value", None)
            self._previous_excepthook = sys.excepthook
            sys.excepthook = self._excepthook
            self._previous_exit = sys.exit
            sys.exit = self._exit
            import builtins

            for name in ("exit", "quit"):  # (site's, which raise SystemExit without sys.exit)
                previous = getattr(builtins, name, None)
                if previous is not None:
                    self._previous_quitters[name] = previous
                    setattr(builtins, name, _NotingQuitter(previous, self._note_exit))
        if threading.current_thread() is threading.main_thread():
            for signum in _ENDING_SIGNALS:
                try:
                    if signal.getsignal(signum) == signal.SIG_DFL:
                        self._previous_handlers[signum] = signal.signal(signum, self._on_ending_signal)
                except (ValueError, OSError):
                    pass

    def _remove_hooks(self) -> None:
        atexit.unregister(self._at_exit)
        if sys.excepthook == self._excepthook:
            sys.excepthook = self._previous_excepthook or sys.__excepthook__
        if sys.exit == self._exit:
            sys.exit = self._previous_exit or _SYS_EXIT
        if self._previous_quitters:
            import builtins

            for name, previous in self._previous_quitters.items():
                quitter = getattr(builtins, name, None)
                if isinstance(quitter, _NotingQuitter) and quitter.note == self._note_exit:
                    setattr(builtins, name, previous)
            self._previous_quitters = {}
        if self._previous_handlers and threading.current_thread() is threading.main_thread():
            for signum, previous in self._previous_handlers.items():
                try:
                    if signal.getsignal(signum) == self._on_ending_signal:
                        signal.signal(signum, previous)
                except (ValueError, OSError):
                    pass
            self._previous_handlers = {}

    def _excepthook(self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        # The traceback printed by the previous hook is still captured into the log; the run
        # ends in the atexit hook that follows.
        self._exit_status = status_of_exception(exc)
        (self._previous_excepthook or sys.__excepthook__)(exc_type, exc, tb)

    def _exit(self, status: Any = None) -> NoReturn:
        self._note_exit(status)
        (self._previous_exit or _SYS_EXIT)(status)

    def _note_exit(self, status: Any) -> None:
        # A SystemExit that ends the program reaches no excepthook, and the atexit hook that
        # ends the run cannot see its code, so sys.exit (and exit, quit) note it on its way
        # out. Not seen: a `raise SystemExit(n)` written out. A sys.exit that the program
        # catches still leaves its note. Only the main thread's sys.exit ends the process.
        if threading.current_thread() is threading.main_thread():
            self._exit_status = status_of_exception(SystemExit(status))

    def _at_exit(self) -> None:
        if os.getpid() != self._pid:
            return  # a forked child: the run belongs to the parent
        status, exit_code = self._exit_status or self._uncaught() or (SUCCESS, None)
        text = None
        if self._capture is None and status == FAILURE and exit_code is None:
            # (nothing captured the traceback the interpreter printed: the log gets its own)
            exc = getattr(sys, "last_value", None)
            if isinstance(exc, BaseException) and exc is not self._last_value_before:
                text = _traceback_text(exc)
        self._finish(status, exit_code, traceback_text=text, exiting=True)

    def _uncaught(self) -> tuple[str, int | None] | None:
        """How an uncaught exception ended the program where our excepthook did not see it
        (the program put its own in place after ours, as ``rich.traceback.install()`` does):
        the interpreter keeps it in ``sys.last_value`` before calling the hook."""
        exc = getattr(sys, "last_value", None)
        if not isinstance(exc, BaseException) or exc is self._last_value_before or _interactive_shell():
            return None
        return status_of_exception(exc)

    def _on_ending_signal(self, signum: int, frame: FrameType | None) -> None:
        self._finish(KILLED, signum=signum)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


    # -- a stop asked from afar ----------------------------------------------------------
    def _on_stop(self, request: dict[str, Any]) -> str | None:
        """KeyboardInterrupt in the main thread, as Ctrl-C would raise it: a real SIGINT, which
        wakes it from a blocking call (a sleep, a wait on a data loader); a program that handles
        SIGINT itself gets it as from Ctrl-C.

        Where SIGINT is not Python's to handle (ignored, as in a job that a non-interactive shell
        started in the background, or left to the system's default), no KeyboardInterrupt can
        be raised: after the stop's grace period the run ends ``user_canceled`` and the process
        is terminated. Returns what is done, in words, where that is not the usual."""
        main = threading.main_thread()
        if not main.is_alive() or main.ident is None:
            return None  # the interpreter is ending already
        handler = signal.getsignal(signal.SIGINT)
        if _interactive_shell():
            # A notebook's kernel (or IPython) outlives its cell: interrupt the cell that runs,
            # if one does, and end the run; never the shell.
            busy = _cells.running > 0 if _cells.watched else callable(handler)
            threading.Thread(target=self._cancel_in_shell, args=(main.ident if busy else None,),
                             name="hyperdash-stop", daemon=True).start()
            return ("interrupting the cell that runs, and ending the run" if busy
                    else "no cell runs: the run ends, and the kernel goes on")
        if callable(handler):
            signal.pthread_kill(main.ident, signal.SIGINT)
            return None
        from .child import stop_grace_setting

        grace = stop_grace_setting()
        threading.Thread(target=self._terminate_after, args=(grace,), name="hyperdash-stop", daemon=True).start()
        why = "ignores SIGINT" if handler == signal.SIG_IGN else "does not handle SIGINT in Python"
        return (f"the job {why}, so no KeyboardInterrupt can stop it: unless it ends first, in {grace:g} s "
                f"the run ends user_canceled and the process (pid {os.getpid()}) is terminated")

    def _cancel_in_shell(self, interrupt: int | None) -> None:
        """End the run ``user_canceled`` (off the sending thread, which the end waits for),
        after a KeyboardInterrupt in thread ``interrupt``, if given, and a moment for the cell
        to end the run itself."""
        if interrupt is not None:
            signal.pthread_kill(interrupt, signal.SIGINT)
            if self._scoped:  # (a %%monitor_cell's: its cell ends it, with what it printed last)
                self._ended_event.wait(_CELL_END_S)
        self._finish(USER_CANCELED)

    def _terminate_after(self, grace: float) -> None:
        """End the run ``user_canceled`` and the process, ``grace`` seconds from now unless the
        run ended meanwhile: SIGTERM (which the program may handle), SIGKILL where it ignores
        that or is still there as long again after it."""
        if self._ended_event.wait(grace):
            return
        self._finish(USER_CANCELED)
        if signal.getsignal(signal.SIGTERM) != signal.SIG_IGN:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(grace)
        os.kill(os.getpid(), signal.SIGKILL)


def _traceback_text(exc: BaseException) -> str:
    """The traceback Python prints for ``exc`` when it reaches the top (chained exceptions
    included), also while it is still on its way there."""
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, _with_callers(exc.__traceback__)))


def _with_callers(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` after the frames that called its first one, where that frame still runs on this
    thread (the exception was caught there, by ``@monitor``'s wrapper, a ``with`` block or
    Lightning, and goes on up): its traceback holds only the frames it has passed so far,
    and the frames above are the ones it passes next, at the lines they are at now.
    ``exc.__traceback__`` itself is left as it is (Python adds those frames to it as it goes).
    """
    try:
        if tb is None or not _on_this_stack(tb.tb_frame):
            return tb  # (an exception that has reached the top already, or ended elsewhere)
        whole, frame = tb, tb.tb_frame.f_back
        while frame is not None:
            whole = TracebackType(whole, frame, frame.f_lasti, frame.f_lineno or 0)
            frame = frame.f_back
        return whole
    except Exception:  # (never the job's problem: the traceback as it was caught)
        return tb


def _on_this_stack(frame: FrameType) -> bool:
    caller: FrameType | None = sys._getframe(1)
    while caller is not None and caller is not frame:
        caller = caller.f_back
    return caller is not None


class _NotingQuitter:
    """``exit`` or ``quit`` as ``site`` made it, noting the code first (see ``_note_exit``)."""

    def __init__(self, quitter: Any, note: Callable[[Any], None]):
        self.quitter, self.note = quitter, note

    def __call__(self, code: Any = None) -> NoReturn:
        self.note(code)
        self.quitter(code)
        raise SystemExit(code)  # (not reached: the quitter raises it)

    def __repr__(self) -> str:
        return repr(self.quitter)


def _interactive_shell() -> bool:
    """Whether this process is an IPython shell (a notebook's kernel, say): one that goes on
    after a KeyboardInterrupt ends a cell, its experiments with it or not."""
    ipython = sys.modules.get("IPython")
    try:
        return ipython is not None and ipython.get_ipython() is not None
    except Exception:
        return False


class _Cells:
    """In an IPython shell: how many cells run now (one inside another with %%monitor_cell)."""

    watched = False
    running = 0

    @classmethod
    def began(cls, *args: Any) -> None:
        cls.running += 1

    @classmethod
    def ended(cls, *args: Any) -> None:
        cls.running = max(0, cls.running - 1)


_cells = _Cells


def _watch_cells() -> None:
    """Follow the shell's cells, once (an idle terminal IPython handles SIGINT as a busy one
    does: whether a cell runs is told by the shell's events, not by the handler)."""
    if _cells.watched:
        return
    try:
        shell = sys.modules["IPython"].get_ipython()
        shell.events.register("pre_run_cell", _cells.began)
        shell.events.register("post_run_cell", _cells.ended)
    except Exception:
        return
    _cells.watched, _cells.running = True, 1  # (first made from a cell: one runs now)


_creating = threading.local()  # (scoped: whether the Experiment made now is a scoped one)


def scoped_experiment(name: str, **options: Any) -> Experiment:
    """An :class:`Experiment` that lives within a call or a cell: while it captures the output,
    the one that captured before keeps its run going (params, metrics) and captures again once
    this one ends."""
    _creating.scoped = True
    try:
        return Experiment(name, **options)
    finally:
        _creating.scoped = False


def _make_room(new: Experiment) -> list[Experiment]:
    """Before ``new`` captures the output: the experiments of this process that capture it now
    are suspended (they capture again when ``new`` ends), or, where ``new`` is a plain one
    replacing a plain one (a notebook cell that creates one run again), ended. Those suspended."""
    with _capturing_lock:
        older = [exp for exp in _capturing if exp._pid == os.getpid()]
    suspended = []
    for exp in older:
        if new._scoped or exp._scoped:
            exp._suspend()
            suspended.append(exp)
        else:
            exp._end_superseded(new.name)
    return suspended


class Callbacks:
    """Callbacks of machine-learning libraries that record into an experiment, made on first
    use (a library is imported only then; see :mod:`hyperdash.integrations`):
    ``model.fit(..., callbacks=[exp.callbacks.keras])``."""

    def __init__(self, exp: Experiment):
        self._exp = exp
        self._made: dict[str, Any] = {}

    def _get(self, library: str) -> Any:
        if library not in self._made:
            import importlib

            try:
                module = importlib.import_module(f"hyperdash.integrations.{library}")
            except ImportError:
                return None
            self._made[library] = module.HyperdashCallback(self._exp)
        return self._made[library]

    @property
    def keras(self) -> Any:
        """A Keras callback that records every number Keras reports at the end of an epoch
        (``loss``, ``val_loss``, ``val_acc``, ...) as a metric, with the epoch as its step;
        ``None`` when Keras is not installed. For each batch's too:
        ``hyperdash.integrations.keras.HyperdashCallback(exp, batches=True)``."""
        return self._get("keras")

    @property
    def transformers(self) -> Any:
        """A Hugging Face ``TrainerCallback``: training arguments as params, the trainer's logs
        as metrics at its global step; ``None`` without Transformers."""
        return self._get("transformers")

    @property
    def xgboost(self) -> Any:
        """An XGBoost training callback: each round's evaluation results; ``None`` without
        XGBoost."""
        return self._get("xgboost")
