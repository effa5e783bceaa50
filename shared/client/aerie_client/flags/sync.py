"""Keeping a client's snapshot current: the change stream, the refetch, the polling fallback.

Two daemon threads per process, both started lazily by :class:`~aerie_client.flags.client.FlagsClient`:

* The **refresher** is the only thread that fetches ``GET /v1/flags/snapshot``, so fetches
  never race and the newest answer always wins. It fetches at once, then whenever the
  stream asks (debounced: a burst of changes costs one fetch), and on a timer: every
  ``poll_interval_s`` while the stream is down (the fallback), every ``safety_poll_s`` while
  it is up (a missed event heals). After a failed fetch it retries with backoff, so a
  client that starts before the service gets its first snapshot within seconds of it.
* The **streamer** holds ``GET /v1/flags/stream`` open. Any event means "something
  changed": the event itself is not applied, the snapshot is refetched, because the snapshot
  is the one source that is complete (overrides, tenant attributes) and ordered. Each
  (re)connect also asks for a refetch, since the stream does not replay what happened while
  it was down; the service ends every stream after a few minutes (or at the token's
  expiry), so the reconnect after a clean end waits only ``reconnect_delay_s``. A failed
  connect backs off exponentially with full jitter, so clients that lost the service
  together do not come back in lockstep.

Only fetch results decide staleness: a refused stream (the service caps open streams per
worker) with a working snapshot endpoint is not an outage, the client simply polls.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import requests
from sseclient import SSEClient
from ulid import ULID

from aerie_client.flags.snapshot import TenantSnapshot, parse_snapshot
from aerie_client.http import PeerUnavailable, ServiceClient, TokenProvider

__all__ = ["Backoff", "Syncer"]

log = logging.getLogger("aerie_client.flags.client")

SNAPSHOT_PATH = "/v1/flags/snapshot"
STREAM_PATH = "/v1/flags/stream"


class Backoff:
    """Exponential backoff with full jitter (a random delay up to ``initial * 2**n``, capped)."""

    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self._rng = rng or random.Random()
        self.failures = 0

    def next_delay(self) -> float:
        ceiling = min(self.max_s, self.initial_s * (2 ** min(self.failures, 30)))
        self.failures += 1
        # Never below a tenth of the ceiling: a zero delay would spin against a dead peer.
        return self._rng.uniform(ceiling / 10, ceiling)

    def reset(self) -> None:
        self.failures = 0


class Syncer:
    """The two threads of one process; a fresh one is made after a fork."""

    def __init__(
        self,
        http: ServiceClient,
        tokens: TokenProvider | None,
        on_snapshot: Callable[[TenantSnapshot], None],
        on_failure: Callable[[], None],
        *,
        poll_interval_s: float,
        safety_poll_s: float,
        debounce_s: float,
        reconnect_delay_s: float,
        backoff_initial_s: float,
        backoff_max_s: float,
        stream_read_timeout_s: float,
        connect_timeout_s: float,
        stream: bool = True,
    ) -> None:
        self._http = http
        self._tokens = tokens
        self._on_snapshot = on_snapshot
        self._on_failure = on_failure
        self._poll_interval_s = poll_interval_s
        self._safety_poll_s = safety_poll_s
        self._debounce_s = debounce_s
        self._reconnect_delay_s = reconnect_delay_s
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._stream_timeout = (connect_timeout_s, stream_read_timeout_s)
        self._use_stream = stream
        self._user_agent = f"aerie-{http.service_name}"
        self._stop = threading.Event()
        self._wanted = threading.Event()
        self._stream_up = threading.Event()
        self._response_lock = threading.Lock()
        self._response: requests.Response | None = None
        self._threads: list[threading.Thread] = []
        #: Counters for tests and the ready check: how often each thing happened.
        self.fetches = 0
        self.failed_fetches = 0
        self.stream_connects = 0

    @property
    def stream_connected(self) -> bool:
        return self._stream_up.is_set()

    @property
    def refresh_pending(self) -> bool:
        return self._wanted.is_set()

    def start(self) -> None:
        targets = [("refresher", self._refresh_loop)]
        if self._use_stream:
            targets.append(("stream", self._stream_loop))
        for name, target in targets:
            thread = threading.Thread(target=target, name=f"aerie-flags-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self._wanted.set()
        self._abort_stream()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout_s)

    def request_refresh(self) -> None:
        self._wanted.set()

    # -- the refresher ----------------------------------------------------------------

    def _refresh_loop(self) -> None:
        backoff = Backoff(*self._backoff)
        while not self._stop.is_set():
            if self._fetch():
                backoff.reset()
                interval = self._safety_poll_s if self._stream_up.is_set() else self._poll_interval_s
            else:
                interval = min(self._poll_interval_s, backoff.next_delay())
            if self._wanted.wait(interval) and not self._stop.is_set():
                # Let the rest of a burst arrive; each event only says "refetch".
                self._stop.wait(self._debounce_s)
            self._wanted.clear()

    def _fetch(self) -> bool:
        try:
            response = self._http.get(SNAPSHOT_PATH)
            with response:
                if response.status_code != 200:
                    raise _Refused(f"snapshot answered {response.status_code}")
                snapshot = parse_snapshot(response.json())
        except (PeerUnavailable, _Refused, ValueError, requests.RequestException) as exc:
            log.warning("flags snapshot not fetched; keeping the last known state", extra={"error": str(exc)})
            self.failed_fetches += 1
            self._on_failure()
            return False
        except Exception:
            # A token provider or a parser failing in a way nobody foresaw must not end the
            # thread: the client would silently never update again.
            log.exception("flags snapshot fetch failed unexpectedly; keeping the last known state")
            self.failed_fetches += 1
            self._on_failure()
            return False
        self.fetches += 1
        self._on_snapshot(snapshot)
        return True

    # -- the streamer -----------------------------------------------------------------

    def _stream_loop(self) -> None:
        backoff = Backoff(*self._backoff)
        while not self._stop.is_set():
            connected = False
            try:
                response = self._open_stream()
                connected = True
                backoff.reset()
                self.stream_connects += 1
                self._stream_up.set()
                self._wanted.set()  # whatever changed while we were away
                with response:
                    for _event in SSEClient(_chunks(response)).events():
                        if self._stop.is_set():
                            break
                        self._wanted.set()
            except Exception as exc:  # every failure of a long-lived read ends up here; we reconnect
                if not self._stop.is_set():
                    log.info("flags stream down", extra={"error": type(exc).__name__})
            finally:
                self._stream_up.clear()
                with self._response_lock:
                    self._response = None
            if self._stop.is_set():
                return
            if connected:
                delay = self._reconnect_delay_s
            else:
                delay = backoff.next_delay()
                self._wanted.set()  # the refresher finds out whether the service is gone
            self._stop.wait(delay)

    def _open_stream(self) -> requests.Response:
        headers = {
            "Accept": "text/event-stream",
            "Cache-Control": "no-cache",
            "User-Agent": self._user_agent,
            "X-Request-ID": str(ULID()),  # one per connection, so both sides' logs name it
        }
        token = self._tokens.token() if self._tokens is not None else None
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        url = f"{self._http.base_url}{STREAM_PATH}"
        response = self._http.session.get(
            url, headers=headers, stream=True, timeout=self._stream_timeout, allow_redirects=False
        )
        if response.status_code != 200:
            response.close()
            if response.status_code == 401 and token is not None and self._tokens is not None:
                self._tokens.invalidate(token)  # expired early or keys rotated: the next try fetches one
            raise _Refused(f"stream answered {response.status_code}")
        if not response.headers.get("Content-Type", "").startswith("text/event-stream"):
            response.close()  # a proxy's page, say: parsing it as events would only invent changes
            raise _Refused("stream is not text/event-stream")
        with self._response_lock:
            self._response = response
        if self._stop.is_set():  # stop() ran while we connected and found nothing to abort
            response.close()
            raise _Refused("stopping")
        return response

    def _abort_stream(self) -> None:
        """Unblock the streamer's read: shut the socket down (closing alone does not wake it)."""
        with self._response_lock:
            response = self._response
        if response is None:
            return
        sock = _socket_of(response)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        response.close()


def _socket_of(response: requests.Response) -> Any:
    """The socket under a streaming response, found the two ways urllib3 and http.client keep it.

    Best effort by design: if neither path exists in some version, ``close`` still works, it
    just waits for the next heartbeat (or the read timeout) to end the thread.
    """
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    if sock is None:
        # http.client hands a "Connection: close" socket over to the response's file object.
        fp = getattr(getattr(response.raw, "_fp", None), "fp", None)
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


class _Refused(Exception):
    """The service answered, but not with what we asked for."""


def _chunks(response: requests.Response) -> Iterator[bytes]:
    """The body as it arrives: ``read1`` returns what one read got, so a small event is not
    held back until more bytes fill a fixed-size chunk (the stream is not always chunked)."""
    raw = response.raw
    while True:
        data = raw.read1(65536)
        if not data:
            return
        yield data
