"""``@monitor``: monitor a function's run: its output, params, metrics and final status.

::

    @monitor("dogs vs. cats")
    def train(exp):          # ``exp`` is optional: the run's Experiment
        exp.param("learning rate", 0.01)
        print("Epoch 1, accuracy: 50%")

The function's return value and exceptions pass through unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["monitor"]

F = TypeVar("F", bound=Callable[..., Any])


def _takes_exp(func: Callable[..., Any]) -> bool:
    code = getattr(func, "__code__", None)
    if code is None:
        return False
    names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    return "exp" in names


def monitor(
    name: str, api_key_getter: Callable[[], str | None] | None = None, capture_io: bool = True, *,
    stall_after: float | str | None = None, system_metrics: bool | None = None,
    system_metrics_interval: float | None = None,
) -> Callable[[F], F]:
    """Decorate a function so that each call is a monitored run called ``name``.

    If the function has a parameter named ``exp``, it receives the run's
    :class:`~hyperdash.experiment.Experiment`. ``api_key_getter`` is called, about every
    5 minutes, for the API key; ``capture_io=False`` leaves the output alone. ``stall_after``
    (seconds, or text such as ``"10m"``; 0 never): how long the job may record nothing before
    the server marks the run stalled (default: the server's window).
    ``system_metrics`` and ``system_metrics_interval`` are :class:`Experiment`'s.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("monitor needs the run's name, a non-empty string: @monitor(\"my job\")")
    if system_metrics_interval is not None:
        from .sysmetrics import interval_setting

        interval_setting(system_metrics_interval)  # a bad one is refused where it is written

    def decorator(func: F) -> F:
        wants_exp = _takes_exp(func)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from .experiment import scoped_experiment  # (on the first call: `import hyperdash` stays light)

            exp = scoped_experiment(name, capture_io=capture_io, api_key_getter=api_key_getter, api="monitor",
                             stall_after=stall_after, system_metrics=system_metrics,
                             system_metrics_interval=system_metrics_interval)
            if wants_exp and "exp" not in kwargs:
                kwargs["exp"] = exp
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                exp.end_with_exception(exc)
                raise
            exp.end()
            return result

        return wrapper  # type: ignore[return-value]

    return decorator

