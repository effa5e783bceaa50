"""Each process's in-memory copy of every flag and override: evaluation never touches Redis.

The snapshot is loaded from Redis when the pub/sub subscriber (re)connects, after Redis
confirmed the subscription, so no change can fall between the load and the live events.
Then every ``flag.*`` event applies the change it carries. Events carry the global revision
of their write (see :mod:`flags.storage`), which makes this exact:

- an event at or below the snapshot's revision is already in it and is skipped;
- the next revision is applied;
- a later one means an event was missed (it cannot happen on one live connection, but a
  bug should heal, not linger): the snapshot reloads.

A reload reads the revision before the data, so the data is at least that recent; events
replayed over it are harmless, because each carries the whole new state of what it changed.

Readers take :attr:`FlagReplica.state`, an immutable value replaced as a whole on every change,
so a request sees one consistent state without locks. Flags are compiled once per change
(:func:`aerie_client.flags.evaluation.compile_flag`), never per request. A write made through this
process is applied here at once (:meth:`FlagReplica.apply`, waiting for any earlier revision
still in flight), so a caller reads its own writes; the same event arriving over pub/sub
later is then skipped by its revision.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aerie import errors
from aerie.pubsub import Subscriber
from aerie_client.flags.evaluation import CompiledFlag, compile_flag
from flags.storage import FlagStore, Loaded, TenantState

__all__ = ["FLAG_EVENTS", "FlagReplica", "State", "TenantView"]

log = logging.getLogger("flags.snapshot")

FLAG_EVENTS = "aerie:event:flag.*"
#: The ``flag.*`` events that change definitions or overrides, each carrying its revision.
SNAPSHOT_TYPES = frozenset(
    {"flag.created", "flag.updated", "flag.deleted", "flag.override.set", "flag.override.removed"}
)
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class TenantView:
    """One tenant's overrides as evaluation reads them."""

    tenant: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    users: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _EMPTY)


_NO_OVERRIDES = TenantView()


@dataclass(frozen=True)
class State:
    revision: int = -1
    docs: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    flags: Mapping[str, CompiledFlag] = field(default_factory=dict)
    overrides: Mapping[str, TenantView] = field(default_factory=dict)

    def tenant(self, tenant_id: str) -> TenantView:
        return self.overrides.get(tenant_id, _NO_OVERRIDES)


def _view(state: TenantState) -> TenantView:
    return TenantView(dict(state.tenant), {k: dict(v) for k, v in state.users.items()})


class FlagReplica:
    def __init__(
        self,
        store: FlagStore,
        subscriber: Subscriber | None,
        *,
        load_timeout_s: float = 2.0,
        catch_up_s: float = 0.5,
    ) -> None:
        self._store = store
        self._subscriber = subscriber
        self._load_timeout_s = load_timeout_s
        self._catch_up_s = catch_up_s
        #: Guards ``state`` changes; waited on by a local write for the revisions before it.
        self._changed = threading.Condition(threading.Lock())
        self._loaded = threading.Event()
        self.state = State()
        if subscriber is not None:
            subscriber.on(FLAG_EVENTS, self._on_message)
            subscriber.on_connect(self.reload)

    # -- readers ----------------------------------------------------------------------

    def current(self) -> State:
        """The state to evaluate with; waits briefly for the first load, else 503."""
        if not self._loaded.is_set():
            if self._subscriber is not None:
                self._subscriber.ensure_started()
            else:
                self.reload()
            if not self._loaded.wait(self._load_timeout_s):
                raise errors.unavailable("The flag definitions are not loaded yet; try again shortly.")
        return self.state

    def ready(self) -> bool:
        """Readiness check: raises while nothing is loaded (``/ready`` answers 503)."""
        self.current()
        return True

    # -- writers ----------------------------------------------------------------------

    def reload(self) -> None:
        loaded = self._store.load()
        with self._changed:
            self.state = _from_loaded(loaded)
            self._loaded.set()
            self._changed.notify_all()
        log.info("flag snapshot loaded", extra={"revision": loaded.revision, "flags": len(loaded.definitions)})

    def apply(self, event: Mapping[str, Any], *, local: bool = False) -> None:
        """Apply one ``flag.*`` event.

        ``local`` is this process's own write, just committed: when earlier revisions have
        not arrived over pub/sub yet, it waits (briefly) for them instead of applying out of
        order, so the writer reads its own write in its next request.
        """
        if event.get("type") not in SNAPSHOT_TYPES:
            return  # flag.schedule.*: a schedule is not part of what evaluation reads
        revision = (event.get("data") or {}).get("revision")
        if not isinstance(revision, int) or isinstance(revision, bool):
            if not local:
                log.warning("flag event without a revision; reloading")
                self.reload()
            return
        with self._changed:
            if local:  # wait until the revisions before this one are in
                self._changed.wait_for(
                    lambda: self._loaded.is_set() and self.state.revision >= revision - 1, self._catch_up_s
                )
            state = self.state
            if revision <= state.revision and self._loaded.is_set():
                return
            if revision == state.revision + 1 and self._loaded.is_set():
                self.state = _applied(state, event, revision)
                self._changed.notify_all()
                return
        log.warning("flag event out of sequence; reloading", extra={"revision": revision, "local": local})
        self.reload()

    def _on_message(self, channel: str, message: str) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            log.error("unreadable flag event skipped", extra={"channel": channel})
            return
        if isinstance(event, dict):
            self.apply(event)


def _from_loaded(loaded: Loaded) -> State:
    return State(
        revision=loaded.revision,
        docs=dict(loaded.definitions),
        flags={k: compile_flag(doc) for k, doc in loaded.definitions.items()},
        overrides={t: _view(s) for t, s in loaded.overrides.items()},
    )


def _applied(state: State, event: Mapping[str, Any], revision: int) -> State:
    """A new state: ``state`` with the change ``event`` carries (copy on write)."""
    kind = event.get("type")
    data = event.get("data") or {}
    docs, flags, overrides = state.docs, state.flags, state.overrides
    if kind in ("flag.created", "flag.updated"):
        doc = data["flag"]
        docs = {**docs, doc["key"]: doc}
        flags = {**flags, doc["key"]: compile_flag(doc)}
    elif kind == "flag.deleted":
        key = data["flag"]["key"]
        docs = {k: v for k, v in docs.items() if k != key}
        flags = {k: v for k, v in flags.items() if k != key}
        overrides = {t: _without_key(view, key) for t, view in overrides.items()}
    elif kind in ("flag.override.set", "flag.override.removed"):
        tenant_id = event["tenant_id"]
        view = _override_applied(overrides.get(tenant_id, _NO_OVERRIDES), kind, data)
        overrides = {t: v for t, v in overrides.items() if t != tenant_id}
        if view.tenant or view.users:  # a deleted tenant's last override gone: forget it
            overrides[tenant_id] = view
    return State(revision, docs, flags, overrides)


def _without_key(view: TenantView, key: str) -> TenantView:
    if key not in view.tenant and key not in view.users:
        return view
    return TenantView(
        {k: v for k, v in view.tenant.items() if k != key}, {k: v for k, v in view.users.items() if k != key}
    )


def _override_applied(view: TenantView, kind: str, data: Mapping[str, Any]) -> TenantView:
    key = data["key"]
    tenant = dict(view.tenant)
    users = dict(view.users)
    if data.get("scope") == "user":
        per_user = dict(users.get(key, {}))
        if kind == "flag.override.set":
            per_user[data["user_id"]] = data["value"]
        else:
            per_user.pop(data["user_id"], None)
        if per_user:
            users[key] = per_user
        else:
            users.pop(key, None)
    elif kind == "flag.override.set":
        tenant[key] = data["value"]
    else:
        tenant.pop(key, None)
    return TenantView(tenant, users)
