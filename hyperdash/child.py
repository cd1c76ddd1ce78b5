"""The child of ``hyperdash run``: start a command without a shell, pass signals on, see how it ends.

Signals are taken synchronously: the ones hyperdash passes on are blocked in every thread (the
mask is set before any thread starts, and threads inherit it) and collected with
``sigwaitinfo``, whose ``si_code`` tells a signal the terminal sent to the whole foreground
process group (the child got its own copy already) from one sent to hyperdash alone (the child
gets it from us). So a Ctrl-C reaches the child exactly once either way.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from . import config, events
from .channel import copy_window_size, isatty, open_channel, same_destination, widen_pipe
from .errors import CommandError

__all__ = [
    "FORWARDED_SIGNALS",
    "CommandError",
    "Outcome",
    "SignalGate",
    "check_command",
    "spawn",
    "monitor_command",
    "monitor_stdin",
]

#: After the child exits, how long its output may still take to reach end of file (a
#: grandchild that inherited the pipe may hold it open for ever) before capture stops.
DRAIN_SECONDS = 2.0
#: hyperdash pipe: how often it looks whether its input has ended (besides being told so)
PIPE_CHECK_SECONDS = 0.2

#: A stop asked from afar: SIGINT, then after this many seconds SIGTERM, then SIGKILL
#: (``HYPERDASH_STOP_GRACE`` sets it).
DEFAULT_STOP_GRACE = 10.0
#: The signals a stop sends, one after the other, while the child goes on.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)

# What hyperdash does not pass on: job control (the terminal stops and continues the whole
# foreground group, hyperdash with it), what it ignores or watches for itself, and what cannot
# be caught. (A fault of hyperdash's own, a SIGSEGV say, still ends it: the kernel delivers it
# whatever the mask; one sent with kill is passed on, as SIGABRT, a watchdog's, is.)
_KEPT = {getattr(signal, name) for name in (
    "SIGKILL", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGCONT", "SIGCHLD", "SIGWINCH", "SIGURG",
    "SIGPIPE", "SIGXFSZ",
) if hasattr(signal, name)}

#: Signals hyperdash passes on to its child instead of acting on them itself: every other one,
#: as an init process in a container does (SIGALRM, SIGUSR1, SIGXCPU, the real-time ones, ...),
#: so that none of them kills hyperdash and leaves the child running unwatched.
FORWARDED_SIGNALS = tuple(sorted(set(signal.valid_signals()) - _KEPT))

# The forwarded signals that ask a program to end (the others ask something else of it).
_ENDING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

# ``si_code`` of a signal raised by the kernel, as the terminal driver does for Ctrl-C, Ctrl-\
# and a hang-up; ``kill()`` from a process gives SI_USER (0) instead.
_SI_KERNEL = 0x80

# Python ignores these for itself; a child must start with the defaults, as under a shell.
_RESET_TO_DEFAULT = tuple(
    sig for sig in (getattr(signal, "SIGPIPE", None), getattr(signal, "SIGXFSZ", None)) if sig
)


def check_command(program: str) -> None:
    """Raise :class:`CommandError` where a shell would refuse to start ``program``."""
    if os.sep not in program:
        found = shutil.which(program)
        if found is None:
            raise CommandError(_not_found(program), 127)
        _check_interpreter(program, found)
        return
    if not os.path.exists(program):
        raise CommandError(_not_found(program), 127)
    if os.path.isdir(program):
        raise CommandError(f"is a directory: {program}", 126)
    if not os.access(program, os.X_OK):
        raise CommandError(f"permission denied: {program}", 126)
    _check_interpreter(program, program)


def _check_interpreter(program: str, path: str) -> None:
    """A script whose ``#!`` line names an interpreter that is not there cannot start: said as
    such (the script itself is there), with the usual cause, a line ending in a carriage return."""
    try:
        with open(path, "rb") as file:
            first = file.readline(512)
    except OSError:
        return
    if not first.startswith(b"#!"):
        return
    # (split at spaces and tabs only, as the kernel does: a carriage return is part of the name)
    named = re.split(rb"[ \t]+", first[2:].rstrip(b"\n").lstrip(b" \t"), maxsplit=1)[0]
    if not named or os.path.exists(named):
        return
    interpreter = os.fsdecode(named)
    message = f"cannot execute {program}: the interpreter on its #! line, {interpreter!r}, is not found"
    if interpreter.endswith("\r"):
        message += " (the line ends with a carriage return: the file has Windows line endings)"
    raise CommandError(message, 127)


# What makes a program name look like a whole shell command line given as one argument.
_SHELL_SYNTAX = re.compile(r"[\s|&;<>()$`*?'\"]")


def _not_found(program: str) -> str:
    """``command not found``, with a hint where ``program`` is a shell command line in one
    argument (``"echo hi && echo there"``), which runs with no shell in between."""
    message = f"command not found: {program}"
    if _SHELL_SYNTAX.search(program):
        import shlex

        message += f" (to run a shell command line, give it to a shell: sh -c {shlex.quote(program)})"
    return message


def spawn(argv: list[str], *, stdout_fd: int, stderr_fd: int, env: dict[str, str]) -> int:
    """Start ``argv`` (searched on PATH, no shell) with the given stdout and stderr; its pid.

    Standard input is inherited. The child starts with no blocked signals and with default
    dispositions for the signals Python ignores, whatever hyperdash did with them. A file that
    is not a program and has no ``#!`` line runs as a ``/bin/sh`` script, as ``execvp`` and
    shells run it (one that looks binary is refused, as bash refuses it).
    """
    check_command(argv[0])
    try:
        try:
            return _spawn(os.posix_spawnp, argv[0], argv, stdout_fd, stderr_fd, env)
        except OSError as exc:
            script = _shell_script(argv[0]) if exc.errno == errno.ENOEXEC else None
            if script is None:
                raise
            return _spawn(os.posix_spawn, _SHELL, [_SHELL, script, *argv[1:]], stdout_fd, stderr_fd, env)
    except FileNotFoundError:
        raise CommandError(_not_found(argv[0]), 127) from None
    except (PermissionError, IsADirectoryError):
        raise CommandError(f"permission denied: {argv[0]}", 126) from None
    except OSError as exc:
        if exc.errno == errno.ENOEXEC:
            raise CommandError(f"cannot execute (not a program): {argv[0]}", 126) from None
        raise CommandError(f"cannot execute {argv[0]}: {exc.strerror}", 126) from None


_SHELL = "/bin/sh"


def _spawn(how: Any, program: str, argv: list[str], stdout_fd: int, stderr_fd: int, env: dict[str, str]) -> int:
    return int(how(program, argv, env,
                   file_actions=[(os.POSIX_SPAWN_DUP2, stdout_fd, 1), (os.POSIX_SPAWN_DUP2, stderr_fd, 2)],
                   setsigmask=(), setsigdef=_RESET_TO_DEFAULT))


def _shell_script(program: str) -> str | None:
    """The path of ``program`` (as PATH finds it) when it may be a shell script: its start holds
    no NUL byte, which a binary file's does; else None."""
    path = program if os.sep in program else shutil.which(program)
    if path is None:
        return None
    try:
        with open(path, "rb") as file:
            start = file.read(256)
    except OSError:
        return None
    return None if b"\0" in start else path


@dataclass
class Outcome:
    """How the child ended, in hyperdash's terms."""

    exit_code: int  #: the child's exit code, or 128+N when signal N killed it
    signal: int | None = None  #: the signal that killed the child
    #: the last of SIGINT (Ctrl-C), SIGTERM and SIGHUP that hyperdash got, and passed on, while
    #: the child ran
    ended_by: int | None = None
    stopped: bool = False  #: a stop asked from afar ended the child

    @property
    def status(self) -> str:
        """The run's final status: Ctrl-C or a stop is ``user_canceled``, another signal
        ``killed``; also when the child caught the signal and exited non-zero (one that exits 0
        finished its work regardless)."""
        if self.stopped:
            return events.USER_CANCELED
        cause = self.signal or (self.ended_by if self.exit_code != 0 else None)
        if cause == signal.SIGINT:
            return events.USER_CANCELED
        if cause:
            return events.KILLED
        return events.SUCCESS if self.exit_code == 0 else events.FAILURE

    @property
    def signal_name(self) -> str | None:
        """The signal the run records: the one that killed the child, or for a child ``killed``
        that exited on its own, the one it was given."""
        cause = self.signal or (self.ended_by if self.status == events.KILLED else None)
        return events.signal_name(cause) if cause else None

    @classmethod
    def from_wait_status(cls, wait_status: int, ended_by: int | None, stopped: bool = False) -> Outcome:
        if os.WIFSIGNALED(wait_status):
            sig = os.WTERMSIG(wait_status)
            return cls(128 + sig, sig, ended_by, stopped)
        return cls(os.waitstatus_to_exitcode(wait_status), None, ended_by, stopped)


def stop_grace_setting() -> float:
    """Seconds between the signals of a stop (``HYPERDASH_STOP_GRACE``, else 10)."""
    return config.env_float("HYPERDASH_STOP_GRACE", DEFAULT_STOP_GRACE)


class SignalGate:
    """Hold the forwarded signals (and SIGCHLD, SIGWINCH) for synchronous handling.

    Enter it in the main thread before any other thread starts, so that every thread inherits
    the mask; :meth:`supervise` then waits for the child, passing signals on. Leaving it
    restores the mask; a signal that arrived after the child ended is dropped, not acted on.
    """

    def __init__(self) -> None:
        self._watched = set(FORWARDED_SIGNALS) | {signal.SIGCHLD, signal.SIGWINCH}
        self._old_mask: set[int] | None = None
        self._supervisor: int | None = None  # the thread in supervise()
        self._stop_grace: float | None = None  # set by stop()

    def stop(self, grace: float) -> None:
        """Stop the child (from any thread): SIGINT now, SIGTERM ``grace`` seconds later if it
        still runs, SIGKILL as long again after that. The run ends ``user_canceled``."""
        self._stop_grace = max(0.0, grace)
        if self._supervisor is not None:
            # wake supervise() (SIGCHLD is held for it, so nothing else sees this one)
            signal.pthread_kill(self._supervisor, signal.SIGCHLD)

    def __enter__(self) -> SignalGate:
        # An ignored SIGCHLD (inherited from our parent) would make the kernel reap the child
        # itself, and its exit status would be lost.
        if signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self._old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, self._watched)
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Take what is pending while still blocked, so that leaving never raises a late
        # KeyboardInterrupt in the middle of the run's final flush.
        pending = signal.sigpending() & self._watched
        while pending:
            signal.sigtimedwait(pending, 0)
            pending = signal.sigpending() & self._watched
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask or ())

    def supervise(self, pid: int, *, resize: Sequence[tuple[int, int]] = ()) -> Outcome:
        """Wait for ``pid`` to end, passing on forwarded signals; how it ended.

        ``resize`` pairs (terminal fd, pty fd): on SIGWINCH the terminal's size is copied to the
        pty the child writes to, so full-screen programs and progress bars keep their width.
        """
        ended_by = None
        self._supervisor = threading.get_ident()
        sent = 0  # how many of STOP_SIGNALS a stop has sent
        stopping: dict[int, Any] = {}  # pid -> psutil.Process: the processes a stop has signalled
        next_at = 0.0  # when the next of them is due
        while True:
            done, wait_status = os.waitpid(pid, os.WNOHANG)
            if done:
                if sent:
                    _finish_stop(stopping, sent, next_at, self._stop_grace or 0.0)
                return Outcome.from_wait_status(wait_status, ended_by, stopped=sent > 0)
            grace = self._stop_grace
            if grace is not None and sent < len(STOP_SIGNALS) and time.monotonic() >= next_at:
                _signal_tree(pid, STOP_SIGNALS[sent], stopping)
                sent += 1
                next_at = time.monotonic() + grace
            if grace is not None and sent < len(STOP_SIGNALS):
                info = signal.sigtimedwait(self._watched, max(0.0, next_at - time.monotonic()))
                if info is None:
                    continue
            else:
                info = signal.sigwaitinfo(self._watched)
            sig = info.si_signo
            if sig == signal.SIGCHLD:
                continue
            if sig == signal.SIGWINCH:
                for terminal_fd, pty_fd in resize:
                    copy_window_size(terminal_fd, pty_fd)
                continue
            if sig in _ENDING:
                ended_by = sig
            if not _child_got_it_too(info, pid):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass


def _signal_tree(pid: int, sig: int, known: dict[int, Any]) -> None:
    """Send ``sig`` to the child ``pid`` and every process under it, as found now, and to those
    an earlier signal reached that still run (a shell that died leaves its children to init).

    A stop reaches the job's whole tree, as Ctrl-C reaches the terminal's whole foreground group:
    a shell defers SIGINT while it waits for its command, and SIGTERM would end the shell alone.
    Nothing else of hyperdash's process group is touched (``hyperdash run ... | tee log``). The
    child goes first, so that a shell knows it was interrupted when its command dies of it."""
    import psutil

    try:
        root = psutil.Process(pid)
        for process in (root, *root.children(recursive=True)):
            known.setdefault(process.pid, process)
    except psutil.NoSuchProcess:
        pass
    for number, process in list(known.items()):
        try:
            process.send_signal(sig)  # (refused for a pid that a new process took over since)
        except psutil.NoSuchProcess:
            del known[number]
        except psutil.AccessDenied:
            pass  # (a setuid program under it)


def _running(processes: Iterable[Any]) -> list[Any]:
    """Those of ``processes`` (psutil's) that still run: not gone, not zombies."""
    import psutil

    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.Error:
            pass
    return alive


def _finish_stop(known: dict[int, Any], sent: int, next_at: float, grace: float) -> None:
    """The child ended during a stop: the rest of the stop's signals, at their times, to the
    processes of its tree that outlive it, until none is left or SIGKILL was sent."""
    import psutil

    while True:
        alive = _running(known.values())
        if not alive or sent >= len(STOP_SIGNALS):
            return
        if time.monotonic() < next_at:
            # wait_procs polls processes that are not our children; a zombie counts as gone
            psutil.wait_procs(alive, timeout=min(0.25, max(0.0, next_at - time.monotonic())))
            continue
        for process in alive:
            try:
                process.send_signal(STOP_SIGNALS[sent])
            except psutil.Error:
                pass
        sent += 1
        next_at = time.monotonic() + grace


def _child_got_it_too(info: signal.struct_siginfo, pid: int) -> bool:
    """Whether the kernel sent this signal to a process group that holds the child as well."""
    if info.si_code != _SI_KERNEL:
        return False
    try:
        return os.getpgid(pid) == os.getpgrp()
    except ProcessLookupError:
        return True


def monitor_command(
    name: str,
    argv: list[str],
    *,
    exit_timeout: float | None = None,
    quiet_config_errors: bool = False,
    merge_streams: bool | None = None,
    stall_after: float | None = None,
    system_metrics: bool | None = None,
    system_metrics_interval: float | None = None,
) -> int:
    """Run ``argv`` as the run ``name``: tee its output, pass signals on, record how it ended.
    ``stall_after``: the run's stall window in seconds (None: the server's).

    ``merge_streams``: give the child one channel for both its stdout and its stderr, as a
    terminal is one, so that their bytes keep the order they were written in, in the terminal
    and in the run (which then stores them all as stdout); else a channel each, which the run
    keeps apart but whose order against each other is only as close as their reads come.
    ``None`` merges them where our own stdout and stderr lead to the same place.
    ``system_metrics`` (default: on unless ``HYPERDASH_SYSTEM_METRICS=0``) samples the child's
    process tree and the machine every ``system_metrics_interval`` seconds.

    Returns hyperdash's exit code: the child's, or 128+N when signal N killed it. Raises
    :class:`CommandError` when the command cannot be started: before any run is created where
    that can be told in advance, else after ending the run as a failure that says why.
    """
    from . import sysmetrics
    from .pump import Pump
    from .run import Run

    check_command(argv[0])
    merge = same_destination(1, 2) if merge_streams is None else merge_streams
    destinations = ((1, events.STDOUT),) if merge else ((1, events.STDOUT), (2, events.STDERR))
    with SignalGate() as gate:
        run = Run(
            name, api="cli_run", exit_timeout=exit_timeout, quiet_config_errors=quiet_config_errors,
            stall_after=stall_after,
        )
        grace = stop_grace_setting()
        run.on_stop = lambda request: gate.stop(grace)
        run.start()
        channels = []  # (read_fd, write_fd, terminal_fd, stream)
        try:
            for terminal_fd, stream in destinations:
                channels.append((*open_channel(terminal_fd), terminal_fd, stream))
            stdout_fd, stderr_fd = channels[0][1], channels[-1][1]
            pid = spawn(argv, stdout_fd=stdout_fd, stderr_fd=stderr_fd, env=child_env(stdout_fd))
        except (CommandError, OSError) as exc:
            for read_fd, write_fd, _, _ in channels:
                os.close(read_fd)
                os.close(write_fd)
            exit_code = getattr(exc, "exit_code", 126)
            run.write(events.STDERR, f"hyperdash: {exc}\n".encode())
            run.end(events.FAILURE, exit_code=exit_code)
            if isinstance(exc, CommandError):
                raise
            raise CommandError(f"cannot start {argv[0]}: {exc}", exit_code) from None
        # Only the child may hold the write ends, so its exit (or death) reads as end of file.
        for _, write_fd, _, _ in channels:
            os.close(write_fd)
        pump = Pump(run, [(read_fd, terminal_fd, stream) for read_fd, _, terminal_fd, stream in channels])
        # A grandchild that writes on after the run (a server the command left running) keeps
        # writing where the output went, unrecorded, rather than dying of SIGPIPE.
        pump.pass_on_after_stop = True
        pump.start()
        sampler = sysmetrics.start_for(run, pid=pid, flag=system_metrics, interval=system_metrics_interval)
        ptys = [(terminal_fd, read_fd) for read_fd, _, terminal_fd, _ in channels if isatty(read_fd)]
        outcome = gate.supervise(pid, resize=ptys)
        if sampler is not None:
            sampler.stop()
        pump.join(DRAIN_SECONDS)
        pump.stop()
    _end_run(run, outcome.status, outcome.exit_code, outcome.signal_name)
    return outcome.exit_code


def _end_run(run: Any, status: str, exit_code: int, signal_: str | int | None = None) -> None:
    """End ``run``; Ctrl-C, SIGTERM or SIGHUP while its last events go to the server ends that
    wait, and no more (they stay spooled, as the run's last line says): hyperdash still exits
    as its command did."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, _stop_waiting)
    try:
        run.end(status, exit_code=exit_code, signal=signal_)
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_waiting(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def child_env(stdout_fd: int) -> dict[str, str]:
    """The child's environment: ours, and unbuffered Python output where it writes to a pipe
    (a terminal makes Python line-buffered anyway), so that lines reach the run as printed."""
    env = dict(os.environ)
    if not isatty(stdout_fd):
        env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _stdin_copy(fd: int) -> int:
    """A copy of ``fd`` for the pump to read (which reads files and ``/dev/null`` too); an empty
    pipe when there is no standard input at all."""
    try:
        return os.dup(fd)
    except OSError:
        read_fd, write_fd = os.pipe()
        os.close(write_fd)
        return read_fd


def monitor_stdin(
    name: str, *, exit_timeout: float | None = None, quiet_config_errors: bool = False,
    stall_after: float | None = None,
) -> int:
    """Pass standard input through to standard output, monitoring it as the run ``name``
    (``stall_after``: its stall window in seconds, None for the server's).

    Ends with ``success`` at end of input (exit 0); on SIGINT with ``user_canceled`` (130), on
    SIGTERM, SIGHUP or another signal that ends ``cat`` with ``killed`` (128+N), after taking what
    was already written; when the reader of standard output goes away, with ``killed`` by
    SIGPIPE (141), as ``cat`` would end.
    """
    from .pump import Pump
    from .run import Run

    stopping = FORWARDED_SIGNALS  # (no child to pass them to: each ends the pipe)
    with SignalGate():
        run = Run(
            name, api="cli_pipe", exit_timeout=exit_timeout, quiet_config_errors=quiet_config_errors,
            stall_after=stall_after,
        )
        main = threading.get_ident()
        run.on_stop = lambda request: signal.pthread_kill(main, signal.SIGINT)  # a stop is a Ctrl-C here
        run.start()
        widen_pipe(0)
        pump = Pump(run, [(_stdin_copy(0), 1, events.STDOUT)])
        # The pump's end wakes this thread (SIGCHLD is held by the gate, and no child of ours
        # needs it), so that the run ends as soon as the input has.
        ended = threading.Event()

        def wake() -> None:
            ended.set()
            signal.pthread_kill(main, signal.SIGCHLD)

        pump.on_end = wake
        pump.start()
        received = None
        while received is None and not ended.is_set() and pump.is_alive():
            info = signal.sigtimedwait((*stopping, signal.SIGCHLD), PIPE_CHECK_SECONDS)
            received = info.si_signo if info and info.si_signo in stopping else None
        if received is None:  # (a stop that came as the input ended is a stop still)
            info = signal.sigtimedwait(stopping, 0)
            received = info.si_signo if info else None
        pump.stop(0.5)
        if received is None and pump.reader_gone:
            # The reader of standard output went away (| head): as cat would, stop, and let
            # the writer of the input meet its own SIGPIPE now rather than at this exit.
            try:
                os.close(0)
            except OSError:
                pass
            received = signal.SIGPIPE
    if received is None:
        _end_run(run, events.SUCCESS, 0)
        return 0
    status = events.USER_CANCELED if received == signal.SIGINT else events.KILLED
    _end_run(run, status, 128 + received, received)
    return 128 + received
