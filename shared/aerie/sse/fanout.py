"""Live messages handed from the process's one pub/sub connection to the streams that want them.

A waiting stream sleeps on its own queue (no Redis connection, no CPU, the GIL released),
so an idle stream costs a thread's memory and nothing else. A listener that falls far
behind, or that may have missed messages while pub/sub was reconnecting, is *broken*: its
stream ends and the client resumes from a durable source (``Last-Event-ID``, or a
snapshot), so a live message is never silently lost.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["Fanout", "Listener"]

T = TypeVar("T")


class Listener(Generic[T]):
    """One stream's queue of live messages; :attr:`broken` once it cannot be trusted."""

    def __init__(self, fanout: Fanout[T], key: Hashable, maxsize: int) -> None:
        self._fanout = fanout
        self.key = key
        self._queue: queue.Queue[T] = queue.Queue(maxsize)
        self.broken = False

    def get(self, timeout: float) -> T | None:
        """The next message, or None after ``timeout`` seconds (at once when broken)."""
        if self.broken:
            return None
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def put(self, message: T) -> None:
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self.broken = True  # the stream ends; the client resumes from the durable source

    def close(self) -> None:
        self._fanout.remove(self)


class Fanout(Generic[T]):
    """Live messages of this process, routed by key (a tenant id, say) to its listeners.

    :meth:`deliver` and :meth:`broadcast` run on the pub/sub thread and only append to
    queues. Register :meth:`break_all` as the subscriber's ``on_connect`` hook: after a
    reconnect, messages published while disconnected are gone from pub/sub, so every open
    stream is broken and resumes from the durable source.
    """

    def __init__(self, maxsize: int = 1000) -> None:
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._listeners: dict[Hashable, set[Listener[T]]] = {}

    def listen(self, key: Hashable) -> Listener[T]:
        listener = Listener(self, key, self._maxsize)
        with self._lock:
            self._listeners.setdefault(key, set()).add(listener)
        return listener

    def remove(self, listener: Listener[T]) -> None:
        with self._lock:
            listeners = self._listeners.get(listener.key)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    del self._listeners[listener.key]

    def wants(self, key: Hashable) -> bool:
        """Whether anyone listens for ``key`` (lets the caller skip building a message)."""
        return key in self._listeners

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def deliver(self, key: Hashable, message: T) -> None:
        with self._lock:
            listeners = list(self._listeners.get(key, ()))
        for listener in listeners:
            listener.put(message)

    def broadcast(self, message: T) -> None:
        """``message`` to every listener, whatever its key."""
        with self._lock:
            listeners = [listener for group in self._listeners.values() for listener in group]
        for listener in listeners:
            listener.put(message)

    def break_all(self) -> None:
        with self._lock:
            for listeners in self._listeners.values():
                for listener in listeners:
                    listener.broken = True
