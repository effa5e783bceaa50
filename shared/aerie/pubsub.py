"""A per-process background subscriber for Redis pub/sub (live fan-out).

uWSGI forks workers after importing the app unless ``lazy-apps`` is set, and a ``PubSub``
or a thread made before a fork does not survive it. So a :class:`Subscriber` starts its
thread on first use and restarts it when it finds itself in a new process. It reconnects
with backoff when Redis goes away and calls every ``on_connect`` hook after each
(re)subscription, so callers can reload state they may have missed while disconnected.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from redis.client import PubSub

from aerie.redis import RedisProvider

__all__ = ["Subscriber"]

log = logging.getLogger("aerie.pubsub")
Handler = Callable[[str, str], None]


class Subscriber:
    def __init__(self, redis: RedisProvider, *, name: str = "aerie-subscriber") -> None:
        self._redis = redis
        self._name = name
        self._patterns: dict[str, list[Handler]] = {}
        self._on_connect: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._connected = threading.Event()

    def on(self, pattern: str, handler: Handler) -> None:
        """Call ``handler(channel, message)`` for messages on channels matching ``pattern``."""
        if self._thread is not None:
            raise RuntimeError("subscribe before the subscriber starts")
        self._patterns.setdefault(pattern, []).append(handler)

    def on_connect(self, hook: Callable[[], None]) -> None:
        self._on_connect.append(hook)

    def start(self) -> None:
        """As one of :class:`aerie.background.Background`'s workers: :meth:`ensure_started`."""
        self.ensure_started()

    def ensure_started(self) -> None:
        """Start (or, after a fork, restart) the listener thread. Cheap to call per request.

        Code that needs the subscription now (a stream, the flag snapshot) calls this as a
        safety net; the worker's :class:`~aerie.background.Background` starts it first.
        """
        if self._pid == os.getpid() and self._thread is not None:
            return
        with self._lock:
            if self._pid == os.getpid() and self._thread is not None:
                return
            if not self._patterns:
                return
            self._pid = os.getpid()
            self._stop.clear()
            self._connected.clear()
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    @property
    def connected(self) -> bool:
        """Subscribed right now; without ``wait_connected(0)``'s lock, for per-request checks."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            client = self._redis.pubsub_client()
            pubsub = client.pubsub()  # subscribe confirmations are awaited, then skipped
            try:
                pubsub.psubscribe(*self._patterns)
                # Only once Redis has processed the PSUBSCRIBE is nothing missed: a hook that
                # reloaded state before then could miss a change published in between.
                self._await_subscribed(pubsub)
                for hook in self._on_connect:
                    hook()
                self._connected.set()
                backoff = 0.1
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._dispatch(message)
            except Exception as exc:
                self._connected.clear()
                log.warning("pub/sub connection lost; reconnecting", extra={"error_type": type(exc).__name__})
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                try:
                    pubsub.close()
                    client.close()
                except Exception:
                    log.debug("closing the pub/sub connection failed", exc_info=True)

    def _await_subscribed(self, pubsub: PubSub, timeout: float = 5.0) -> None:
        """Wait for Redis to confirm every pattern; messages read meanwhile are dispatched."""
        waiting = set(self._patterns)
        deadline = time.monotonic() + timeout
        while waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectionError("Redis did not confirm the subscription")
            message = pubsub.get_message(timeout=remaining)
            if message is None:
                continue
            if message.get("type") == "psubscribe":
                waiting.discard(message["channel"])
            else:
                self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message.get("type") != "pmessage":
            return
        for handler in self._patterns.get(message["pattern"], ()):
            try:
                handler(message["channel"], message["data"])
            except Exception:
                log.exception("pub/sub handler failed", extra={"channel": message["channel"]})
