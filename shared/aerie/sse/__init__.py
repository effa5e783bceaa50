"""Server-Sent Events under uWSGI threads, for every service: frames, caps, live fan-out.

Every streaming service shares this; what one adds is only what its stream shows: which
pub/sub events, routed to which open streams (a routing function), and for projects a
replay from the durable stream before going live. One module per concern:

- :mod:`~aerie.sse.frames`: :func:`frame` encodes one event, :func:`id_only` only moves the
  client's last event id, :func:`respond` sends a body as ``text/event-stream``.
- :mod:`~aerie.sse.limits`: :class:`StreamLimits`, the cap and lifetime of streams, bounded
  by the worker's uWSGI ``threads`` and ``harakiri``.
- :mod:`~aerie.sse.slots`: :class:`StreamSlots` holds a process to that cap (503 beyond it).
- :mod:`~aerie.sse.body`: :class:`SSEBody`, the WSGI body whose cleanup always runs.
- :mod:`~aerie.sse.ending`: :func:`client_gone_probe` notices a hung-up client within a
  second; :func:`while_authorized` also ends a stream whose token expired or was revoked.
- :mod:`~aerie.sse.fanout`: :class:`Fanout` hands live messages to each stream's
  :class:`Listener`, and breaks those that cannot be trusted to have them all.
- :mod:`~aerie.sse.live`: :class:`LiveEvents` feeds a fanout from the worker's
  :class:`~aerie.pubsub.Subscriber`, keyed by the service's routing function.
- :mod:`~aerie.sse.relay`: :func:`relay`, the loop of an open stream (live frames,
  heartbeats, its end).
- :mod:`~aerie.sse.streams`: :class:`LiveStreams` puts them together for a stream that is
  live only.
"""

from aerie.sse.body import SSEBody
from aerie.sse.ending import client_gone_probe, while_authorized
from aerie.sse.fanout import Fanout, Listener
from aerie.sse.frames import EVENT_STREAM, HEARTBEAT, RETRY, frame, id_only, respond
from aerie.sse.limits import StreamLimits, uwsgi_harakiri, uwsgi_threads
from aerie.sse.live import EVERYONE, LiveEvent, LiveEvents, Route
from aerie.sse.relay import relay
from aerie.sse.slots import Gauge, StreamSlots
from aerie.sse.streams import LiveStreams

__all__ = [
    "EVENT_STREAM",
    "EVERYONE",
    "HEARTBEAT",
    "RETRY",
    "Fanout",
    "Gauge",
    "Listener",
    "LiveEvent",
    "LiveEvents",
    "LiveStreams",
    "Route",
    "SSEBody",
    "StreamLimits",
    "StreamSlots",
    "client_gone_probe",
    "frame",
    "id_only",
    "relay",
    "respond",
    "uwsgi_harakiri",
    "uwsgi_threads",
    "while_authorized",
]
