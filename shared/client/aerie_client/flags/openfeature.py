"""An OpenFeature provider over :class:`~aerie_client.flags.client.FlagsClient`: the SDK's API, our evaluation.

    from openfeature import api
    from aerie_client.flags.openfeature import AerieProvider

    api.set_provider(AerieProvider(flags_client))
    api.get_client().get_boolean_value("new-dashboard", False, EvaluationContext(targeting_key=user.id))

Every resolution is local (the client's snapshot, the engine the service runs): no network per
call, and the same answer the native ``FlagsClient.evaluate`` gives. The only module importing
``openfeature`` (the ``openfeature`` extra), so the native client never needs the SDK.

What the SDK sees:

* the context's ``targeting_key`` is the engine's ``user_id`` (it buckets rollouts and looks up
  user overrides, as the service does); every attribute passes as it is;
* a value of the wrong type answers the caller's default with ``TYPE_MISMATCH`` (``True`` is
  not an integer, as in JSON; an integer is a float, since JSON does not tell 1 from 1.0);
* ``PROVIDER_NOT_READY`` before the first snapshot, ``FLAG_NOT_FOUND`` for an unknown key,
  ``GENERAL`` when the engine answers ``ERROR`` (a flag document it cannot use);
* the engine's reasons as OpenFeature's (they share the names), ``flag_metadata`` with the
  flag's ``revision`` and the deciding ``rule`` when known;
* events: ``PROVIDER_READY`` at the first snapshot (through ``initialize`` when it arrives in
  time, emitted later otherwise), ``PROVIDER_STALE`` when the client falls back to its last
  known state, ``PROVIDER_READY`` again on recovery, ``PROVIDER_CONFIGURATION_CHANGED`` with
  ``flags_changed`` for every snapshot that changes answers.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode, ProviderNotReadyError
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider
from openfeature.provider.metadata import Metadata

from aerie_client.flags.client import FlagsClient
from aerie_client.flags.evaluation import DEFAULT, DISABLED, ERROR, SPLIT, STALE, TARGETING_MATCH, Evaluation
from aerie_client.flags.snapshot import TenantSnapshot

if TYPE_CHECKING:
    from openfeature.flag_evaluation import FlagValueType

__all__ = ["AerieProvider"]

PROVIDER_NAME: Final = "aerie-flags"

#: The engine's reasons carry OpenFeature's names.
_REASONS: Final[Mapping[str, Reason]] = {
    name: Reason[name] for name in (DISABLED, TARGETING_MATCH, SPLIT, DEFAULT, STALE, ERROR)
}

_Check = Callable[[Any], Any]

# The phases of the provider's life that decide who announces readiness.
_IDLE: Final = "idle"  # not initialized (or shut down): emit nothing
_INITIALIZING: Final = "initializing"  # initialize() is waiting and will report readiness itself
_WAITING: Final = "waiting"  # initialize() gave up: the first snapshot's arrival emits READY
_READY: Final = "ready"  # readiness reported: later snapshots emit CONFIGURATION_CHANGED


def _boolean(value: Any) -> Any:
    return value if type(value) is bool else _MISMATCH


def _string(value: Any) -> Any:
    return value if type(value) is str else _MISMATCH


def _integer(value: Any) -> Any:
    return value if type(value) is int else _MISMATCH


def _float(value: Any) -> Any:
    kind = type(value)
    if kind is float:
        return value
    return float(value) if kind is int else _MISMATCH


def _object(value: Any) -> Any:
    return value if isinstance(value, dict | list) else _MISMATCH


_MISMATCH: Final = object()


class AerieProvider(AbstractProvider):
    """OpenFeature resolutions from a :class:`FlagsClient` (injected, and shared with native
    checks if the service has them: ``shutdown`` leaves it running unless ``close_client``).

    ``init_timeout_s`` is how long ``initialize`` waits for the first snapshot; past it,
    ``initialize`` raises ``ProviderNotReadyError`` (the SDK then reports ``PROVIDER_ERROR``,
    and ``set_provider_and_wait`` raises it) and the snapshot's later arrival emits
    ``PROVIDER_READY``.
    """

    def __init__(self, client: FlagsClient, *, init_timeout_s: float = 5.0, close_client: bool = False) -> None:
        super().__init__()
        self._client = client
        self._init_timeout_s = init_timeout_s
        self._close_client = close_client
        self._phase = _IDLE
        #: The snapshot readiness or the last change was reported for: a change notification
        #: for the very snapshot initialize() already saw is not a change.
        self._reported: TenantSnapshot | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        _PROVIDERS.add(self)

    @property
    def client(self) -> FlagsClient:
        return self._client

    def get_metadata(self) -> Metadata:
        return Metadata(name=PROVIDER_NAME)

    # -- lifecycle ----------------------------------------------------------------------

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Subscribe to the client, start it, and wait up to ``init_timeout_s`` for a snapshot."""
        with self._lock:
            self._phase = _INITIALIZING
            if not self._unsubscribe:
                self._unsubscribe = [self._client.on_change(self._changed), self._client.on_stale(self._stale)]
        self._client.start(timeout_s=self._init_timeout_s)
        with self._lock:
            # Checked under the lock the listeners take: a snapshot landing just after the
            # wait either is seen here or finds _WAITING and announces itself.
            snapshot = self._client.snapshot
            if snapshot is not None:
                self._phase = _READY
                self._reported = snapshot
                return
            self._phase = _WAITING
        raise ProviderNotReadyError(f"no flags snapshot within {self._init_timeout_s} s; still trying")

    def shutdown(self) -> None:
        with self._lock:
            self._phase = _IDLE
            unsubscribe, self._unsubscribe = self._unsubscribe, []
            self._reported = None
        for remove in unsubscribe:
            remove()
        if self._close_client:
            self._client.close()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # the parent's sync thread may have held it mid-fork

    # -- events (called on the client's sync thread) ------------------------------------

    def _changed(self, keys: frozenset[str]) -> None:
        snapshot = self._client.snapshot
        with self._lock:
            if snapshot is self._reported or self._phase in (_IDLE, _INITIALIZING):
                return
            self._reported = snapshot
            phase = self._phase
            self._phase = _READY
        if phase == _WAITING:
            self.emit_provider_ready(ProviderEventDetails(message="first flags snapshot"))
        else:
            self.emit_provider_configuration_changed(ProviderEventDetails(flags_changed=sorted(keys)))

    def _stale(self, stale: bool) -> None:
        with self._lock:
            if self._phase != _READY:
                return
        if stale:
            self.emit_provider_stale(ProviderEventDetails(message="flags service unreachable: last known state"))
        else:
            self.emit_provider_ready(ProviderEventDetails(message="flags service reachable again"))

    # -- resolution ---------------------------------------------------------------------

    def _resolve(self, key: str, default: Any, evaluation_context: EvaluationContext | None, check: _Check) -> Any:
        """One resolution: the snapshot, the engine, then the type check; never raises."""
        try:
            snapshot = self._client.current_snapshot()
            if snapshot is None:
                return FlagResolutionDetails(
                    value=default,
                    reason=Reason.ERROR,
                    error_code=ErrorCode.PROVIDER_NOT_READY,
                    error_message="no flags snapshot yet",
                )
            if evaluation_context is None:
                context: dict[str, Any] = {}
            else:
                context = dict(evaluation_context.attributes)
                if evaluation_context.targeting_key:
                    context["user_id"] = evaluation_context.targeting_key
            result = snapshot.evaluate(key, context)
            if result is None:
                return FlagResolutionDetails(
                    value=default,
                    reason=Reason.ERROR,
                    error_code=ErrorCode.FLAG_NOT_FOUND,
                    error_message=f"flag {key!r} not found",
                )
            if result.reason == ERROR:
                return FlagResolutionDetails(
                    value=default,
                    reason=Reason.ERROR,
                    error_code=ErrorCode.GENERAL,
                    error_message=f"flag {key!r} could not be evaluated",
                    flag_metadata=_metadata(result),
                )
            value = check(result.value)
            if value is _MISMATCH:
                return FlagResolutionDetails(
                    value=default,
                    reason=Reason.ERROR,
                    error_code=ErrorCode.TYPE_MISMATCH,
                    error_message=f"flag {key!r} serves {type(result.value).__name__}",
                    flag_metadata=_metadata(result),
                )
            reason = STALE if self._client.stale else result.reason
            return FlagResolutionDetails(
                value=value,
                reason=_REASONS.get(reason, Reason.UNKNOWN),
                variant=result.variant,
                flag_metadata=_metadata(result),
            )
        except Exception as exc:
            return FlagResolutionDetails(
                value=default, reason=Reason.ERROR, error_code=ErrorCode.GENERAL, error_message=str(exc)
            )

    def resolve_boolean_details(
        self, flag_key: str, default_value: bool, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, _boolean)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, _string)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, _integer)

    def resolve_float_details(
        self, flag_key: str, default_value: float, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, _float)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return self._resolve(flag_key, default_value, evaluation_context, _object)

    def __repr__(self) -> str:
        return f"AerieProvider({self._client!r}, phase={self._phase})"


def _metadata(result: Evaluation) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    if result.revision is not None:
        metadata["revision"] = result.revision
    if result.rule is not None:
        metadata["rule"] = result.rule
    return metadata


_PROVIDERS: weakref.WeakSet[AerieProvider] = weakref.WeakSet()


def _reset_providers_after_fork() -> None:
    for provider in list(_PROVIDERS):
        provider._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_providers_after_fork)
