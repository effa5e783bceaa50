"""A test double for :class:`~aerie_client.flags.client.FlagsClient`: fixed values, no server, no snapshot.

    flags = FixedFlags({"new-dashboard": True})
    app = create_app(flags=flags)      # whatever the code under test takes a FlagsClient as
    flags.set("new-dashboard", False)  # listeners hear about it, as from a real snapshot

Same calls as the client (``evaluate``, ``value``, ``is_enabled``, ``on_change``, ``on_stale``,
``start``, ``close``), so code under test cannot tell; rules, rollouts and overrides are the
real client's business (tests of targeting use a snapshot file and
:meth:`FlagsClient.from_file`). A key not given answers the declared default with reason
``ERROR``, exactly as the client answers an unknown flag.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from aerie_client.flags.client import ChangeListener, Flag, StaleListener
from aerie_client.flags.evaluation import DEFAULT, STALE, Evaluation, error_evaluation

__all__ = ["FixedFlags"]

log = logging.getLogger("aerie_client.flags.client")


class FixedFlags:
    """Serves ``values`` (flag key -> value) to every context, with reason ``DEFAULT``."""

    def __init__(self, values: Mapping[str, Any] | None = None, *, revision: int | None = None) -> None:
        self._values: dict[str, Any] = dict(values or {})
        self._revision = revision
        self._stale = False
        self._lock = threading.Lock()
        self._change_listeners: list[ChangeListener] = []
        self._stale_listeners: list[StaleListener] = []
        #: Every evaluation asked for, (key, context): what a test asserts on.
        self.calls: list[tuple[str, dict[str, Any]]] = []

    # -- what tests drive -----------------------------------------------------------------

    def set(self, key: str, value: Any) -> None:
        """Serve ``value`` for ``key`` from now on, and tell the change listeners."""
        with self._lock:
            self._values[key] = value
        self._notify(self._change_listeners, frozenset({key}))

    def remove(self, key: str) -> None:
        with self._lock:
            self._values.pop(key, None)
        self._notify(self._change_listeners, frozenset({key}))

    def set_stale(self, stale: bool) -> None:
        """Answer ``STALE`` (as a client that lost the service does) or stop doing so."""
        changed, self._stale = self._stale is not stale, stale
        if changed:
            self._notify(self._stale_listeners, stale)

    # -- the client's API -----------------------------------------------------------------

    def start(self, timeout_s: float | None = None) -> bool:
        return True

    def close(self) -> None:
        pass

    @property
    def revision(self) -> int | None:
        return self._revision

    @property
    def stale(self) -> bool:
        return self._stale

    def on_change(self, callback: ChangeListener) -> Callable[[], None]:
        self._change_listeners.append(callback)
        return lambda: self._change_listeners.remove(callback)

    def on_stale(self, callback: StaleListener) -> Callable[[], None]:
        self._stale_listeners.append(callback)
        return lambda: self._stale_listeners.remove(callback)

    def evaluate(self, flag: Flag, /, **context: Any) -> Evaluation:
        try:
            self.calls.append((flag.key, context))
            with self._lock:
                if flag.key not in self._values:
                    return error_evaluation(flag.default)
                value = self._values[flag.key]
            return Evaluation(value, None, STALE if self._stale else DEFAULT, None, self._revision)
        except Exception:
            return error_evaluation(getattr(flag, "default", None))

    def value(self, flag: Flag, /, **context: Any) -> Any:
        return self.evaluate(flag, **context).value

    def is_enabled(self, flag: Flag, /, **context: Any) -> bool:
        return self.evaluate(flag, **context).value is True

    def _notify(self, listeners: list[Callable[[Any], None]], argument: Any) -> None:
        for listener in list(listeners):
            try:
                listener(argument)
            except Exception:
                log.exception("flags listener failed")

    def __repr__(self) -> str:
        return f"FixedFlags({self._values!r})"
