"""The Python flags client: local evaluation of the caller tenant's flags, kept current.

Declare flags where they are used, so ``grep NEW_DASHBOARD`` finds every check::

    NEW_DASHBOARD = Flag("new-dashboard", default=False)

    flags = FlagsClient(os.environ["AERIE_FLAGS_URL"], ClientCredentials(...))
    if flags.is_enabled(NEW_DASHBOARD, user_id=user.id):
        ...

The client fetches its tenant's snapshot (``GET /v1/flags/snapshot``) and evaluates with
:mod:`aerie_client.flags.evaluation`, the very code the service runs, so an answer here is the
service's answer without a network round trip. :mod:`aerie_client.flags.sync` keeps the snapshot
current in background threads.

An evaluation never raises and never blocks on the network, because a flag check sits in
the middle of the caller's request:

* an unknown flag, or a service never reached, answers the *declared* default with reason
  ``ERROR`` (the code's default is the safe one, the service's may not be known);
* a service that went away after a successful fetch answers from the last known state with
  reason ``STALE`` (rule kept), until a fetch succeeds again.

Listeners (:meth:`FlagsClient.on_change`, :meth:`FlagsClient.on_stale`) hear about new flags
and outages from the sync thread; what a listener raises is logged, never raised into it.
An offline client (:meth:`FlagsClient.from_file`) evaluates a snapshot file and never touches
the network; :meth:`FlagsClient.save_snapshot` writes one, for tests and cold starts.

Fork safety: threads do not survive ``fork``. A client made before uWSGI forks its workers
(or in any parent process) starts its threads lazily, in the process that first evaluates;
after a fork the child keeps the inherited snapshot (still the last known state) and starts
its own threads and HTTP session on its first evaluation.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from aerie_client.flags.evaluation import ABSENT, ERROR, STALE, Evaluation, error_evaluation
from aerie_client.flags.snapshot import TenantSnapshot, parse_snapshot
from aerie_client.flags.sync import Syncer
from aerie_client.http import ServiceClient

__all__ = ["ChangeListener", "Flag", "FlagsClient", "StaleListener"]

#: Called with the keys whose answers may have changed (every key, for the first snapshot).
ChangeListener = Callable[[frozenset[str]], None]
#: Called with True when the client starts answering from its last known state, False when
#: the service answers again.
StaleListener = Callable[[bool], None]

log = logging.getLogger("aerie_client.flags.client")


@dataclass(frozen=True, slots=True)
class Flag:
    """A flag as code declares it: its key and the default served when no answer can be had."""

    key: str
    default: Any


class _Tokens:
    """Adapts "anything with ``.token()``" to :class:`~aerie_client.http.TokenProvider`."""

    def __init__(self, provider: Any) -> None:
        self._provider = provider

    def token(self) -> str:
        return self._provider.token()

    def invalidate(self, token: str) -> None:
        invalidate = getattr(self._provider, "invalidate", None)
        if invalidate is not None:
            invalidate(token)


class FlagsClient:
    """Evaluates one tenant's flags locally; safe to share between threads and across forks.

    ``token_provider`` is :class:`aerie_client.http.ClientCredentials` or anything with a
    ``token()`` method returning a bearer token with ``flags:read`` for the tenant (``None``
    sends no token, for tests against an open server). Intervals are in seconds; the defaults
    suit production (the stream carries changes within a second; polling is the fallback).
    """

    def __init__(
        self,
        base_url: str | None,
        token_provider: Any,
        *,
        poll_interval_s: float = 30.0,
        safety_poll_s: float = 300.0,
        debounce_s: float = 0.1,
        reconnect_delay_s: float = 1.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        stream_read_timeout_s: float = 45.0,
        connect_timeout_s: float = 2.0,
        read_timeout_s: float = 5.0,
        stream: bool = True,
        service_name: str = "flags-client",
        snapshot: TenantSnapshot | None = None,
    ) -> None:
        """``base_url`` None makes an offline client: it serves ``snapshot`` and never syncs."""
        self.base_url = base_url.rstrip("/") if base_url is not None else None
        self._tokens = _Tokens(token_provider) if token_provider is not None else None
        self._timeouts = (connect_timeout_s, read_timeout_s)
        self._service_name = service_name
        self._sync_options: dict[str, Any] = {
            "poll_interval_s": poll_interval_s,
            "safety_poll_s": safety_poll_s,
            "debounce_s": debounce_s,
            "reconnect_delay_s": reconnect_delay_s,
            "backoff_initial_s": backoff_initial_s,
            "backoff_max_s": backoff_max_s,
            "stream_read_timeout_s": stream_read_timeout_s,
            "connect_timeout_s": connect_timeout_s,
            "stream": stream,
        }
        #: The last snapshot fetched (any process's: a forked child inherits it). Replaced as a
        #: whole, so readers need no lock.
        self._snapshot: TenantSnapshot | None = snapshot
        #: True while the service cannot be reached after a snapshot was had.
        self._stale = False
        self._closed = False
        self._offline = base_url is None
        #: Copied on write, so the sync thread iterates without holding a lock.
        self._change_listeners: tuple[ChangeListener, ...] = ()
        self._stale_listeners: tuple[StaleListener, ...] = ()
        self._reset_process_state()
        _CLIENTS.add(self)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> FlagsClient:
        """An offline client serving the snapshot in ``path`` (as :meth:`save_snapshot` wrote it,
        or a saved ``GET /v1/flags/snapshot`` body): no network at all, never stale.

        Raises ``OSError`` or ``ValueError`` here, when the file is missing or not a snapshot:
        a test or a cold start asking for a file wants to know, unlike an evaluation.
        """
        snapshot = parse_snapshot(orjson.loads(Path(path).read_bytes()))
        return cls(None, None, snapshot=snapshot)

    def save_snapshot(self, path: str | os.PathLike[str]) -> None:
        """Write the current snapshot to ``path`` atomically (a temporary file in the same
        directory, fsynced, then renamed), so a reader or a crash never sees half a file.

        Raises ``LookupError`` when there is no snapshot yet, ``OSError`` when writing fails.
        """
        snapshot = self._snapshot
        if snapshot is None:
            raise LookupError("no flags snapshot yet: nothing to save")
        body = orjson.dumps(snapshot.to_body(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        target = Path(path)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(body)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def _reset_process_state(self) -> None:
        """What belongs to one process: threads, their events, the locks and the HTTP session."""
        self._lock = threading.Lock()
        self._listeners_lock = threading.Lock()
        self._ready = threading.Event()
        if self._snapshot is not None:
            self._ready.set()
        self._syncer: Syncer | None = None
        self._http: ServiceClient | None = None
        self._started = False

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, timeout_s: float | None = None) -> bool:
        """Start syncing in this process; with ``timeout_s``, wait that long for a first snapshot.

        Returns whether a snapshot is at hand. Starting is optional (the first evaluation
        starts it too); waiting is what a service does at start-up so that its first requests
        see real flags rather than defaults.
        """
        self._ensure_started()
        if timeout_s is not None:
            return self._ready.wait(timeout_s)
        return self._ready.is_set()

    def close(self) -> None:
        """Stop this process's threads and close its connections; evaluations then answer from
        the last known state, marked ``STALE`` (an offline client has nothing to stop)."""
        if self._offline:
            return
        with self._lock:
            self._closed = True
            syncer, http = self._syncer, self._http
            self._syncer = None
            self._http = None
            self._started = False
        if self._snapshot is not None:
            self._set_stale(True)
        if syncer is not None:
            syncer.stop()
        if http is not None:
            http.close()

    def __enter__(self) -> FlagsClient:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def syncer(self) -> Syncer | None:
        """This process's syncer (tests and health checks look at its counters)."""
        return self._syncer

    @property
    def revision(self) -> int | None:
        snapshot = self._snapshot
        return snapshot.revision if snapshot is not None else None

    @property
    def stale(self) -> bool:
        return self._stale

    @property
    def offline(self) -> bool:
        return self._offline

    @property
    def snapshot(self) -> TenantSnapshot | None:
        """The snapshot evaluations use now (None before the first); reading it starts nothing."""
        return self._snapshot

    def current_snapshot(self) -> TenantSnapshot | None:
        """:attr:`snapshot`, after starting this process's sync if it has not started: what an
        adapter evaluating on its own (the OpenFeature provider) calls instead of ``evaluate``,
        so that a forked worker still syncs. Never raises."""
        if not self._started:
            try:
                self._ensure_started()
            except Exception:
                log.warning("flags sync could not start", exc_info=True)
        return self._snapshot

    # -- listeners ----------------------------------------------------------------------

    def on_change(self, callback: ChangeListener) -> Callable[[], None]:
        """Call ``callback(changed_keys)`` from the sync thread whenever a new snapshot changes
        answers (the first snapshot changes every key); returns the function that unsubscribes.

        A snapshot equal to the last one calls nothing, so a listener sees real changes only.
        The callback runs on the thread that keeps flags current: it should be quick, and what
        it raises is logged and swallowed (the thread must go on syncing).
        """
        with self._listeners_lock:
            self._change_listeners = (*self._change_listeners, callback)
        return lambda: self._remove_listener("_change_listeners", callback)

    def on_stale(self, callback: StaleListener) -> Callable[[], None]:
        """Call ``callback(True)`` when the client starts answering from its last known state
        (the service went away, or :meth:`close`), ``callback(False)`` when a fetch succeeds
        again; returns the function that unsubscribes. Same threading rules as :meth:`on_change`."""
        with self._listeners_lock:
            self._stale_listeners = (*self._stale_listeners, callback)
        return lambda: self._remove_listener("_stale_listeners", callback)

    def _remove_listener(self, attribute: str, callback: Callable[..., None]) -> None:
        with self._listeners_lock:
            listeners = getattr(self, attribute)
            if callback in listeners:
                index = listeners.index(callback)
                setattr(self, attribute, listeners[:index] + listeners[index + 1 :])

    def _notify(self, listeners: tuple[Callable[[Any], None], ...], argument: Any) -> None:
        for listener in listeners:
            try:
                listener(argument)
            except Exception:
                log.exception("flags listener failed", extra={"listener": repr(listener)})

    def _set_stale(self, stale: bool) -> None:
        with self._listeners_lock:
            changed = self._stale is not stale
            self._stale = stale
            listeners = self._stale_listeners
        if changed:
            self._notify(listeners, stale)

    # -- sync ---------------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._started or self._closed:
            return
        with self._lock:
            if self._started or self._closed:
                return
            if self._offline:
                self._started = True
                return
            self._http = ServiceClient(
                self.base_url,
                token_provider=self._tokens,
                connect_timeout=self._timeouts[0],
                read_timeout=self._timeouts[1],
                retries=1,
                service_name=self._service_name,
                peer="flags",
            )
            self._syncer = Syncer(self._http, self._tokens, self._set_snapshot, self._set_failed, **self._sync_options)
            self._syncer.start()
            self._started = True

    def _after_fork_in_child(self) -> None:
        # The parent's threads are gone and its locks may have been held mid-fork.
        self._reset_process_state()

    def _set_snapshot(self, snapshot: TenantSnapshot) -> None:
        previous = self._snapshot
        self._snapshot = snapshot
        # A fetch still in flight when close() ran lands after it: closed stays stale.
        self._set_stale(self._closed)
        self._ready.set()
        listeners = self._change_listeners
        if listeners:
            try:
                changed = snapshot.changed_keys(previous)
            except Exception:
                log.exception("flags snapshot comparison failed; reporting every key as changed")
                changed = frozenset(snapshot.flags) | (frozenset(previous.flags) if previous else frozenset())
            if changed:
                self._notify(listeners, changed)

    def _set_failed(self) -> None:
        if self._snapshot is not None:
            self._set_stale(True)

    # -- evaluation ---------------------------------------------------------------------

    def _evaluate(self, flag: Flag, context: dict[str, Any]) -> Evaluation:
        """The one evaluation behind :meth:`evaluate`, :meth:`value` and :meth:`is_enabled`.

        Takes the context as the dict the caller's keywords already built, so a typed call
        costs one plain call more than ``evaluate``, not a second keyword repacking; and
        looks the flag up in the snapshot's entries itself (one dict lookup for the flag and
        its overrides) because this is the path every flag check in every request takes.
        """
        try:
            if not self._started:
                self._ensure_started()
            snapshot = self._snapshot
            if snapshot is None:
                return error_evaluation(flag.default)
            entry = snapshot.entries.get(flag.key)
            if entry is None:
                return error_evaluation(flag.default)
            compiled, tenant_override, per_user = entry
            context["tenant"] = snapshot.tenant
            context["tenant_id"] = snapshot.tenant_id
            user_override: Any = ABSENT
            if per_user is not None:
                user_id = context.get("user_id")
                kind = type(user_id)
                if kind is str or kind is int:
                    user_override = per_user.get(str(user_id), ABSENT)
            result = compiled.evaluate(context, tenant_override=tenant_override, user_override=user_override)
            if result.reason == ERROR:
                return error_evaluation(flag.default)
            if self._stale:
                return Evaluation(result.value, result.variant, STALE, result.rule, result.revision)
            return result
        except Exception:
            log.warning("flag evaluation failed", extra={"flag": getattr(flag, "key", None)}, exc_info=True)
            return error_evaluation(getattr(flag, "default", None))

    def evaluate(self, flag: Flag, /, **context: Any) -> Evaluation:
        """``flag``'s evaluation for ``context`` (``user_id=``, ``session_id=``, ``ip=``, any
        attribute); never raises. ``tenant`` and ``tenant_id`` come from the snapshot."""
        return self._evaluate(flag, context)

    def value(self, flag: Flag, /, **context: Any) -> Any:
        """The value ``flag`` serves for ``context``; never raises."""
        return self._evaluate(flag, context).value

    def is_enabled(self, flag: Flag, /, **context: Any) -> bool:
        """Whether ``flag`` serves ``True`` for ``context`` (only ``True`` counts: a variant
        name or a truthy object is not "enabled"); never raises."""
        return self._evaluate(flag, context).value is True

    def __repr__(self) -> str:
        return f"FlagsClient({self.base_url!r}, revision={self.revision}, stale={self._stale}, offline={self._offline})"


#: Every live client, so that a forked child can reset them (weak: a dropped client goes away).
_CLIENTS: weakref.WeakSet[FlagsClient] = weakref.WeakSet()


def _reset_clients_after_fork() -> None:
    for client in list(_CLIENTS):
        client._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_clients_after_fork)
