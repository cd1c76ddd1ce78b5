"""What every channel is: checked settings, a masked view of them, and ``deliver``."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

from .delivery import CONNECT_TIMEOUT_S, READ_TIMEOUT_S, DeliveryResult, Outcome, Scrubber, log
from .message import Notification
from .settings import SettingsError


class Channel(abc.ABC):
    """One place a person hears from: a Slack hook, a phone's push subscription, a mailbox, ...

    Construction checks the settings (raising :class:`~.settings.SettingsError`) and keeps them
    normalised in :attr:`settings`, the form to store. :meth:`masked` is the form to show.
    ``repr`` shows only the masked form, so a channel can be logged. ``timeout`` is
    (connect, read) in seconds: a receiver that hangs is cut off.
    """

    kind: ClassVar[str]
    #: The settings that say where a delivery goes, and so where the secrets go with it.
    destinations: ClassVar[tuple[str, ...]] = ()
    #: The settings that are secrets besides the destinations (an address that is itself a
    #: secret, a hook's, is given anew whenever it changes). A change of destination must come
    #: with these given again: the stored ones are never carried to a new address.
    secret_settings: ClassVar[tuple[str, ...]] = ()
    #: Every setting the kind takes. Any other is refused rather than dropped: a misspelt one
    #: (``chatid``, ``tokn``) would otherwise be lost without a word.
    setting_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: Mapping[str, Any], *, timeout: tuple[float, float] | None = None):
        if not isinstance(settings, Mapping):
            raise TypeError("settings must be a mapping")
        unknown = sorted(str(name) for name in settings if name not in self.setting_names)
        if unknown:
            raise SettingsError(f"{self.kind} channels have no setting {unknown[0]!r}: "
                                f"they take {', '.join(self.setting_names)}")
        self.settings: dict[str, Any] = self.check(settings)
        self.timeout = timeout or (CONNECT_TIMEOUT_S, READ_TIMEOUT_S)
        self.scrub = Scrubber(self.secrets())

    @abc.abstractmethod
    def check(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The settings, checked and normalised; raises SettingsError with a clear message."""

    @abc.abstractmethod
    def masked(self) -> dict[str, Any]:
        """The settings with every secret masked: safe to show on a page or in a log."""

    @abc.abstractmethod
    def secrets(self) -> list[str]:
        """Every secret string in the settings, to scrub from answers and errors."""

    @abc.abstractmethod
    def send(self, notification: Notification) -> DeliveryResult:
        """One attempt, classified. Network trouble is a result, not an exception."""

    def deliver(self, notification: Notification) -> DeliveryResult:
        """Send ``notification`` once and say how it went; logs one line, secrets masked."""
        try:
            result = self.send(notification)
        except Exception as exc:  # a bug must not take the delivery loop down, nor leak a secret
            result = DeliveryResult(Outcome.FAILED, self.scrub(f"{type(exc).__name__}: {exc}"))
            log.error("%r: delivery of %s raised %s", self, notification.key, result.detail)
            return result
        level = 20 if result.outcome is Outcome.DELIVERED else 30
        log.log(level, "%r: %s %s (%s)", self, notification.key, result.outcome.value, result.detail or "no answer")
        return result

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.masked().items())
        return f"<{type(self).__name__} {shown}>"
