"""Open streams served by a uWSGI mule, so that no API thread ever waits on one.

uWSGI gives every worker the same number of threads, and an open Server-Sent Events stream
holds its thread for its whole life. Sizing the workers for fifty streams (96 threads each)
let up to sixteen API requests per worker run at once under load, and their fight for the
GIL cost a projects read 40% of its throughput (``bench/``). So a service with streams keeps
its workers small and sends its stream paths elsewhere, all inside the one instance:

- uWSGI's internal routing sends the stream path to a unix socket (the ``http`` action). With
  ``offload-threads`` the worker hands the connection to an offload thread, which relays the
  bytes in C; the worker's thread is free at once.
- A mule (an extra process the uWSGI master forks, watches and respawns) runs the same app
  under waitress on that socket, with threads that only ever serve streams.

The service's ``uwsgi.ini`` (the mule and the workers' ``/ready`` read the socket's path
back from the route with :func:`socket_path`)::

    offload-threads = 1
    route = ^/v1/projects/events$ http:/tmp/aerie-projects-$(PORT).sock
    mule = %dprojects/mule.py

The mule's script (``projects/mule.py``) calls the service's ``serve_streams``, which calls
:func:`run_mule` with the service's builder: the same app, without the background consumers
the workers already run.

Long downloads take the same road (audit's ``/v1/audit/export``): in a worker, ``harakiri``
would cut an export at 30 s, and a client that paused reading for uWSGI's socket timeout
(4 s) sooner; a cut close-delimited response looks complete to the client. waitress has
neither limit and buffers what a slow client has not read yet.

``$(PORT)`` keeps two instances on one machine apart (tests, the local stack); on Cloud
Foundry each instance has its own container.

uWSGI's ``http`` action always asks in HTTP/1.0, so waitress would answer a stream as a body
that ends when the connection closes, and clients that read in blocks (``requests``'
``iter_lines()`` reads 512 bytes at a time) would see an event only once enough bytes
gathered behind it. The route first records the client's own protocol (``addvar``, before the
``http`` action), and the mule answers an HTTP/1.1 client as HTTP/1.1 does: chunked, so
each event reaches every client as it is written. The response still ends the connection,
as the relay expects::

    route = ^/v1/projects/events$ addvar:HTTP_X_AERIE_CLIENT_PROTOCOL=${SERVER_PROTOCOL}
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

import falcon
import waitress
import waitress.channel
import waitress.task

from aerie.app import exit_on_config_error
from aerie.config import Settings

__all__ = ["STREAM_THREADS", "StreamsReachable", "StreamsUnavailable", "run_mule", "serve", "socket_path"]

log = logging.getLogger("aerie.streams")

#: Threads of the stream server: each open stream holds one (``aerie.sse.StreamLimits``
#: caps the streams at three quarters of this: 144, what an instance held when two workers
#: of 96 threads served them).
STREAM_THREADS = 192


def socket_path() -> str | None:
    """Where this instance's stream mule listens: the unix socket its ``uwsgi.ini`` routes
    streams to (``route = <regex> http:<path>``), read back through ``uwsgi.opt``; None
    outside uWSGI or without such a route.

    The route is the one place the path is written: uWSGI expands ``$(PORT)`` in an option,
    but not in a ``set-placeholder``, and pyuwsgi starts Python before it reads its ini, so
    what an ``env`` option sets never reaches ``os.environ``.
    """
    try:
        import uwsgi  # type: ignore[import-not-found]  # present only inside uWSGI processes

        raw = uwsgi.opt.get("route")
    except Exception:
        return None
    for value in raw if isinstance(raw, list) else [raw]:
        text = value.decode() if isinstance(value, bytes) else str(value or "")
        _regex, _, action = text.partition(" ")
        if action.startswith("http:/"):
            return action.removeprefix("http:").strip()
    return None


def serve(app: Callable[..., Any], path: str, threads: int = STREAM_THREADS) -> None:
    """Serve ``app`` on the unix socket ``path`` until the process is stopped.

    ``channel_request_lookahead`` makes waitress read ahead on each connection, which is what
    lets it offer ``waitress.client_disconnected``: a stream notices its client hung up (the
    offload thread closes our side when the client closes its) within a second, not at its
    next heartbeat.
    """
    log.info("stream server starting", extra={"socket": path, "threads": threads})
    server = waitress.create_server(
        app,
        unix_socket=path,
        unix_socket_perms="600",
        threads=threads,
        # Streams beyond the threads would wait unanswered; StreamLimits answers them 503
        # long before, so this only bounds what a misbehaving client can hold open.
        connection_limit=threads * 2,
        channel_request_lookahead=1,
        # A stream beats at least every 60 s (AERIE_SSE_HEARTBEAT_SECONDS), so a channel
        # silent for longer is dead.
        channel_timeout=90,
        ident="aerie",
    )
    server.channel_class = _RelayedChannel  # type: ignore[union-attr]
    server.run()


#: The header the route adds (``addvar:HTTP_X_AERIE_CLIENT_PROTOCOL=${SERVER_PROTOCOL}``), as
#: waitress names a request's headers.
CLIENT_PROTOCOL_HEADER = "X_AERIE_CLIENT_PROTOCOL"


class _ClientProtocolTask(waitress.task.WSGITask):
    """Answers in the protocol of the client uWSGI relays for, not uWSGI's HTTP/1.0."""

    def __init__(self, channel: Any, request: Any) -> None:
        super().__init__(channel, request)
        if self.version == "1.0" and request.headers.get(CLIENT_PROTOCOL_HEADER) == "HTTP/1.1":
            self.version = "1.1"
            # The relay carries one response per connection.
            self.close_on_finish = True


class _RelayedChannel(waitress.channel.HTTPChannel):
    task_class = _ClientProtocolTask


def run_mule(service: str, build: Callable[[Settings], falcon.App], threads: int = STREAM_THREADS) -> None:
    """A stream mule's whole life: build the app from the environment and serve its streams
    with ``threads`` threads (requests beyond them wait for one).

    On a configuration error the mule returns (and uWSGI respawns it); the workers hit the
    same error and ``need-app`` stops the instance.
    """
    path = socket_path()
    if path is None:
        raise RuntimeError("uwsgi.ini sets no streams-socket for the stream mule")
    app = exit_on_config_error(service, build)
    if app is not None:
        serve(app, path, threads)


class StreamsUnavailable(RuntimeError):
    """The mule's stream socket does not accept connections."""


class StreamsReachable:
    """``/ready`` check of an API worker: returns when the mule's stream socket accepts
    connections, raises :class:`StreamsUnavailable` when not.

    Without it the stream path would answer 502 from uWSGI's router while the mule starts, or
    after it died and before the master has respawned it.
    """

    def __init__(self, path: str, timeout_s: float = 0.5) -> None:
        self._path = path
        self._timeout_s = timeout_s

    def __call__(self) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self._timeout_s)
            try:
                sock.connect(self._path)
            except OSError as exc:
                raise StreamsUnavailable(f"the stream server at {self._path} does not answer: {exc}") from None
