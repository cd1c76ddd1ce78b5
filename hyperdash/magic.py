"""The ``%%monitor_cell`` IPython cell magic: monitor one notebook cell as a run.

    In [1]: from hyperdash import monitor_cell

    In [2]: %%monitor_cell dogs vs. cats
            print("Epoch 1, accuracy: 50%")
            exp.metric("accuracy", 0.5)

    In [3]: %%monitor_cell --stall-after 10m dogs vs. cats
            train()

Importing this module inside IPython (which ``from hyperdash import monitor_cell`` does)
registers the magic with the running shell; ``%load_ext hyperdash`` does the same. The cell runs
in the notebook's namespace, so the names it defines stay for the next cells, and its output shows
in the notebook as it is printed while it also goes to the run. Inside the cell, ``exp`` is the
run's :class:`~hyperdash.experiment.Experiment`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Protocol, TypeVar

try:
    from IPython.core.error import UsageError
    from IPython.core.getipython import get_ipython
except ImportError as exc:
    raise ImportError(
        "the %%monitor_cell magic needs IPython: pip install 'hyperdash[jupyter]'"
    ) from exc

from .capture import in_ipython_kernel
from .experiment import scoped_experiment
from .settings import parse_stall_window

__all__ = ["monitor_cell", "load_ipython_extension"]

USAGE = "%%monitor_cell needs the run's name: %%monitor_cell NAME, for example %%monitor_cell dogs vs. cats"
AWAIT_USAGE = ("%%monitor_cell cannot run a cell with a top-level await (a cell magic's cell runs inside the "
               "running cell, whose event loop is busy): start the run in a cell before, exp = Experiment({name!r}), "
               "and end it in a cell after, exp.end()")
STALL_USAGE = ("%%monitor_cell --stall-after needs a duration: %%monitor_cell --stall-after 10m NAME "
               "(90s, 10m, 1h; 0 or off never)")

# ``--stall-after DURATION`` or ``--stall-after=DURATION``, anywhere among the magic's words
# (``--stall-after=`` with nothing after it too, so that it is refused, not taken as the name).
_STALL_OPTION = re.compile(r"(?:^|\s)--stall-after(?:=(\S*)|\s+(?!--)(\S+))?(?=\s|$)")

_MISSING = object()

T = TypeVar("T")


# What the magic uses of IPython's shell, whose own classes carry no annotations.
class _CellResult(Protocol):
    error_before_exec: BaseException | None
    error_in_exec: BaseException | None


class _DisplayHook(Protocol):
    exec_result: _CellResult | None


class _Shell(Protocol):
    user_ns: dict[str, Any]
    displayhook: _DisplayHook

    def run_cell(self, raw_cell: str, store_history: bool = False) -> _CellResult: ...

    def transform_cell(self, raw_cell: str) -> str: ...

    def should_run_async(self, raw_cell: str, *, transformed_cell: str | None = None) -> bool: ...

    def register_magic_function(
        self, func: Callable[..., Any], magic_kind: str = "line", magic_name: str | None = None
    ) -> None: ...


def _running_shell() -> _Shell | None:
    """The IPython shell this code runs in, or ``None`` outside IPython."""
    shell: _Shell | None = get_ipython()  # type: ignore[no-untyped-call]  # IPython does not annotate it
    return shell


def monitor_cell(line: str, cell: str) -> None:
    """Run ``cell`` in the running IPython shell as a monitored run named ``line``.

    This is the ``%%monitor_cell [--stall-after DURATION] NAME`` cell magic. The run ends
    ``success`` when the cell does, ``failure`` (with the traceback in its log) when it raises,
    and ``user_canceled`` when the kernel is interrupted. The notebook shows the cell's output
    and traceback as usual. ``--stall-after`` (90s, 10m, 1h; 0 or off never) is the run's stall
    window, as ``Experiment(..., stall_after=...)`` takes it; a bad one runs nothing.
    """
    shell = _running_shell()
    if shell is None:
        raise RuntimeError("%%monitor_cell runs inside IPython or a Jupyter kernel")
    name, stall_after = _parse_line(line)
    if _awaits(shell, cell):
        raise UsageError(AWAIT_USAGE.format(name=name))
    _run_monitored(shell, name, cell, stall_after)


def _awaits(shell: _Shell, cell: str) -> bool:
    """Whether ``cell`` has a top-level ``await`` (IPython would run it as a coroutine, which a
    cell magic, run synchronously inside the running cell, cannot)."""
    try:
        return shell.should_run_async(cell, transformed_cell=shell.transform_cell(cell))
    except Exception:
        return False


def _parse_line(line: str) -> tuple[str, float | None]:
    """The run's name and its stall window in seconds (None: the server's) from the magic's
    line; UsageError for a missing name or a bad window."""
    stall_after = None
    options = list(_STALL_OPTION.finditer(line))
    if len(options) > 1:
        raise UsageError("%%monitor_cell takes --stall-after once")
    if options:
        value = options[0].group(1) or options[0].group(2)
        if not value:
            raise UsageError(STALL_USAGE)
        try:
            stall_after = parse_stall_window(value)
        except ValueError as exc:
            raise UsageError(f"%%monitor_cell --stall-after: {exc}") from None
        line = line[:options[0].start()].rstrip() + " " + line[options[0].end():].lstrip()
    name = line.strip()
    if not name:
        raise UsageError(USAGE)
    return name, stall_after


def load_ipython_extension(ipython: _Shell) -> None:
    """Register ``%%monitor_cell`` with ``ipython``; called by ``%load_ext hyperdash``."""
    ipython.register_magic_function(monitor_cell, magic_kind="cell", magic_name="monitor_cell")


def _run_monitored(shell: _Shell, name: str, cell: str, stall_after: float | None = None) -> None:
    # The ExecutionResult of the cell that holds the magic: IPython drops the display hook's
    # reference to it while the nested cell runs, and the nested cell's error is reported on it.
    outer_result = getattr(shell.displayhook, "exec_result", None)
    exp = scoped_experiment(name, api="jupyter", stall_after=stall_after)
    try:
        with _bound(shell.user_ns, "exp", exp):
            # Run as IPython runs any cell: its own syntax works, and an error is shown with the
            # cell's frames alone, once.
            result = shell.run_cell(cell, store_history=False)
    except BaseException as exc:  # the cell's own errors are caught by run_cell: an interrupt
        exp.end_with_exception(exc)
        raise
    finally:
        shell.displayhook.exec_result = outer_result
    error = result.error_before_exec or result.error_in_exec
    if error is not None:
        # The log gets the traceback a script would print: from the cell's frame down.
        error.with_traceback(_without_ipython_frames(error.__traceback__))
    # A terminal shell has just printed the traceback to the captured output; a kernel sends
    # it to the notebook as a message of its own, which no capture sees.
    printed_into_log = exp.captures_output and not in_ipython_kernel()
    exp.end_with_exception(error, log_traceback=not printed_into_log)
    if error is not None and outer_result is not None:
        # Fail the notebook cell, as any cell that raises fails ("Run All" stops here), without
        # showing the traceback a second time.
        outer_result.error_in_exec = error


def _without_ipython_frames(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` from the first frame that is not IPython's own (the one that ran the cell)."""
    while tb is not None and tb.tb_frame.f_globals.get("__name__", "").startswith("IPython."):
        tb = tb.tb_next
    return tb


@contextmanager
def _bound(namespace: dict[str, Any], key: str, value: T) -> Iterator[T]:
    """Bind ``namespace[key]`` to ``value`` for the block, then put back what was there,
    unless the block rebound the name itself."""
    previous = namespace.get(key, _MISSING)
    namespace[key] = value
    try:
        yield value
    finally:
        if namespace.get(key, _MISSING) is value:
            if previous is _MISSING:
                del namespace[key]
            else:
                namespace[key] = previous


def _register_with_running_shell() -> None:
    shell = _running_shell()
    if shell is not None:
        load_ipython_extension(shell)


# `from hyperdash import monitor_cell` in one cell makes `%%monitor_cell` usable in the next.
_register_with_running_shell()
