"""JSON log lines on stdout, one per event, as Cloud Foundry's log router expects.

Fields that could carry credentials are never logged: the access log records method,
path, status and identities, never headers, bodies or query strings.

Nothing a client sends makes a line long: an access line's strings are cut to
:data:`MAX_ACCESS_FIELD_CHARS` (a request path may be as long as uWSGI's 32 KiB buffer),
an application line's message and fields to :data:`MAX_LOG_FIELD_CHARS` and its traceback
to :data:`MAX_EXC_INFO_CHARS`, each with a marker saying how long it was
(:func:`truncated`). Both checks run only on a line that is already long, so an ordinary
line costs one ``len`` more.

The formatter is a few lines over ``json.dumps`` rather than python-json-logger: the access
log writes one line per request, and the library's field processing cost about 45 µs of
each request in the benchmark (bench/), a quarter of an authenticated read. The access log
itself is serialised with orjson, about ten times cheaper again than ``json.dumps``.

Every line goes through one :class:`LineWriter` per process. Writing each access line
straight to stdout cost a ``write(2)`` per request (uWSGI's ``sys.stdout`` is line-buffered),
plus the text layer's lock and encoding, on the request thread: with ``strftime`` for the
timestamp, about a tenth to a seventh of a worker's Python time under load (py-spy, bench/).
The writer instead queues the line and one background thread writes the queue every 100 ms,
whole lines in as few ``write(2)`` calls as fit in ``PIPE_BUF`` each. Lines at WARNING and
above are written before the call returns, so a crash never waits in a buffer; the queue is
written at exit (``atexit`` and uWSGI's ``uwsgi.atexit``, both run by a graceful stop); at
worst a SIGKILLed worker (harakiri, Cloud Foundry's kill 10 s after SIGTERM) loses the last
100 ms of access lines.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import select
import threading
import time
import weakref
from collections import deque
from typing import Any

import orjson

from aerie_client.http.context import current_request_id, current_vcap_request_id

__all__ = [
    "MAX_ACCESS_FIELD_CHARS",
    "MAX_EXC_INFO_CHARS",
    "MAX_LOG_FIELD_CHARS",
    "AccessLog",
    "JsonLineFormatter",
    "LineHandler",
    "LineWriter",
    "configure_logging",
    "stdout_writer",
    "truncated",
]

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}

#: Writes of at most this many bytes to a pipe are atomic (POSIX), so two workers sharing
#: the stdout pipe never interleave inside each other's lines; a longer line goes alone.
PIPE_BUF: int = getattr(select, "PIPE_BUF", 512)


#: The longest string an access line keeps of a field (a path, say).
MAX_ACCESS_FIELD_CHARS = 1024
#: The longest message, and string field, an application log line keeps.
MAX_LOG_FIELD_CHARS = 8192
#: The longest traceback an application log line keeps: its start and its end, where the
#: exception and its message are.
MAX_EXC_INFO_CHARS = 32768


def truncated(text: str, limit: int, *, keep_end: bool = False) -> str:
    """``text`` if it has at most ``limit`` characters, else a cut ``limit`` long at most.

    The cut keeps the start (with ``keep_end``, the start and the end) and marks what was
    left out: ``"abc…[truncated, 900000 chars]"``, so a reader knows the value was longer
    and by how much. The same marker in log lines and in events (:mod:`aerie.events`).
    """
    if len(text) <= limit:
        return text
    mark = f"…[truncated, {len(text)} chars]"
    room = max(0, limit - len(mark))
    tail = room // 2 if keep_end else 0
    return text[: room - tail] + mark + (text[len(text) - tail :] if tail else "")


def _bounded_value(value: Any, limit: int) -> Any:
    """``value`` as a log line may carry it: strings (and what only ``str()`` can write) cut to ``limit``."""
    if isinstance(value, str):
        return truncated(value, limit)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {truncated(str(k), limit): _bounded_value(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_bounded_value(v, limit) for v in value]
    return truncated(str(value), limit)


#: Characters JSON leaves unescaped that many line readers take for line ends (Python's
#: ``str.splitlines``, log viewers): a request path holding one would cut its line in two,
#: and the second half could pass for a line of its own. Escaped, they read back the same.
_LINE_BREAKS = {"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_LINE_BREAKS_UTF8 = [(raw.encode(), escaped.encode()) for raw, escaped in _LINE_BREAKS.items()]


def _one_line(line: bytes) -> bytes:
    """``line`` (UTF-8 JSON) with the characters of ``_LINE_BREAKS`` escaped."""
    if b"\xc2\x85" in line or b"\xe2\x80" in line:  # U+0085, or U+2000..U+203F
        for raw, escaped in _LINE_BREAKS_UTF8:
            line = line.replace(raw, escaped)
    return line


class JsonLineFormatter(logging.Formatter):
    def __init__(self, static: dict[str, Any]) -> None:
        super().__init__()
        self._static = static

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **self._static,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                line[key] = value
        if "request_id" not in line:  # any line logged while serving a request says which
            request_id = current_request_id()
            if request_id is not None:
                line["request_id"] = request_id
                line["vcap_request_id"] = current_vcap_request_id()
        exc_info = self.formatException(record.exc_info) if record.exc_info else None
        if exc_info is not None:
            line["exc_info"] = exc_info
        text = json.dumps(line, ensure_ascii=False, default=str)
        if len(text) > MAX_LOG_FIELD_CHARS:  # some field may be too long: only then look
            bounded = {k: _bounded_value(v, MAX_LOG_FIELD_CHARS) for k, v in line.items() if k != "exc_info"}
            if exc_info is not None:
                bounded["exc_info"] = truncated(exc_info, MAX_EXC_INFO_CHARS, keep_end=True)
            text = json.dumps(bounded, ensure_ascii=False, default=str)
        for raw, escaped in _LINE_BREAKS.items():
            text = text.replace(raw, escaped)
        return text


class LineWriter:
    """Whole lines to one file descriptor, batched by a thread of this process.

    :meth:`write` appends to a deque (atomic under the GIL, no lock: about 0.1 µs) and
    returns; the thread takes what is queued every ``interval`` seconds and writes it. Writes
    never split a line: each ``os.write`` carries whole lines, at most :data:`PIPE_BUF` bytes
    unless one line alone is longer, so lines of other processes on the same pipe (the other
    workers, uWSGI itself) land between lines, never inside one.
    ``urgent`` lines (and any line once ``max_pending`` are queued, so a stalled reader slows
    requests down instead of growing memory) are written, with everything queued before them,
    before :meth:`write` returns.

    Fork-safe the way :class:`aerie.background.Background` is: the thread belongs to the
    process that started it, and the first write in any other process (a uWSGI worker, with
    or without ``lazy-apps``) drops the parent's queue (the parent writes it) and starts a
    thread of its own. :meth:`close` writes what is queued; every writer alive at exit is
    closed by ``atexit`` and, inside uWSGI, by ``uwsgi.atexit``.

    With ``batch=False`` every line is written before :meth:`write` returns and no thread
    runs: see :func:`stdout_writer`. Tests hand it the write end of a pipe or a file: the same
    code path as production.
    """

    def __init__(
        self,
        fd: int = 1,
        *,
        batch: bool = True,
        interval: float = 0.1,
        max_pending: int = 10_000,
        chunk_bytes: int = PIPE_BUF,
    ) -> None:
        self.fd = fd
        self._interval = interval
        self._max_pending = max_pending
        self._chunk = chunk_bytes
        #: Lines that could not be written (the descriptor failed); they are dropped, not retried.
        self.dropped = 0
        self._sync = not batch  # write each line at once: not batching, or closed
        self._owner: int | None = None  # pid whose thread drains the queue
        self._stop = threading.Event()
        self._reset_locks()
        _live.add(self)

    def _reset_locks(self) -> None:
        """Fresh locks and an empty queue: a lock held by another thread at fork stays held in the child."""
        self._start_lock = threading.Lock()
        self._write_lock = threading.Lock()  # one drain at a time, so lines leave in queue order
        self._pending: deque[bytes] = deque()

    def write(self, line: bytes, *, urgent: bool = False) -> None:
        """Queue one line (it must end with a newline); write it now if ``urgent``."""
        if self._owner != os.getpid():
            self._adopt()
        pending = self._pending
        pending.append(line)
        if urgent or self._sync or len(pending) >= self._max_pending:
            self.flush()

    def flush(self) -> None:
        """Write everything queued so far, in order; called by the thread, urgent lines and exit."""
        with self._write_lock:
            # Only the lines queued now: writers keep appending on the right meanwhile.
            pending = self._pending
            count = len(pending)
            if count:
                pop = pending.popleft
                self._write_whole_lines(b"".join([pop() for _ in range(count)]))

    def close(self) -> None:
        """Stop the thread and write the queue; later lines are written synchronously."""
        self._sync = True
        self._stop.set()
        if self._owner is not None and self._owner != os.getpid():
            self._reset_locks()  # a fork's copy of the parent's queue: the parent writes those lines
        self.flush()

    def _adopt(self) -> None:
        """Make this process the owner: first use, or the first write after a fork."""
        pid = os.getpid()
        with self._start_lock:
            if self._owner == pid:
                return
            if self._owner is not None:  # inherited through fork: the parent's lines are its own
                self._reset_locks()
            self._stop = threading.Event()
            if not self._sync:
                thread = threading.Thread(
                    target=self._run, args=(self._stop,), name=f"aerie-log-writer-{self.fd}", daemon=True
                )
                thread.start()
            _install_exit_hooks(pid)
            self._owner = pid

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self._interval):
            self.flush()

    def _write_whole_lines(self, data: bytes) -> None:
        view = memoryview(data)
        start, end = 0, len(data)
        try:
            while start < end:
                cut = end
                if end - start > self._chunk:
                    # The last newline that fits; a single longer line is written whole, alone.
                    cut = data.rfind(b"\n", start, start + self._chunk) + 1
                    if cut <= start:
                        cut = data.find(b"\n", start + self._chunk) + 1 or end
                while start < cut:
                    start += os.write(self.fd, view[start:cut])
        except OSError:
            # Nowhere left to write (a closed pipe): count the loss rather than fail a request.
            self.dropped += data.count(b"\n", start)


_live: weakref.WeakSet[LineWriter] = weakref.WeakSet()
_hooked_pid: int | None = None


def _close_all() -> None:
    for writer in list(_live):
        with contextlib.suppress(Exception):
            writer.close()


def _install_exit_hooks(pid: int) -> None:
    """Close every writer at exit in this process: Python's ``atexit`` and uWSGI's hook.

    A worker that stops gracefully (SIGTERM with base.ini's ``gracefully_kill_them_all``,
    checked with lazy-apps) calls ``uwsgi.atexit`` and then finalises Python, which runs
    ``atexit``; either alone would do, both cost nothing. uWSGI skips both in a worker still
    busy with a request (killed after ``worker-reload-mercy``). Another hook already installed
    (the coverage hook of the service tests) is chained, not replaced.
    """
    global _hooked_pid
    if _hooked_pid == pid:
        return
    _hooked_pid = pid
    atexit.unregister(_close_all)
    atexit.register(_close_all)
    try:
        import uwsgi  # type: ignore[import-not-found]  # present only inside uWSGI workers
    except ImportError:
        return
    previous = getattr(uwsgi, "atexit", None)
    if getattr(previous, "__wrapped__", None) is _close_all:
        return

    def close_then_previous() -> None:
        _close_all()
        if callable(previous):
            previous()

    close_then_previous.__wrapped__ = _close_all  # type: ignore[attr-defined]
    uwsgi.atexit = close_then_previous


def _reset_in_child() -> None:
    for writer in list(_live):
        writer._reset_locks()


if hasattr(os, "register_at_fork"):
    # Run by os.fork() and by uWSGI's fork with py-call-osafterfork (base.ini); the pid check
    # in LineWriter.write covers forks that skip it, except a start lock held at that moment.
    os.register_at_fork(after_in_child=_reset_in_child)

_stdout: LineWriter | None = None
_stdout_lock = threading.Lock()


def stdout_writer() -> LineWriter:
    """This interpreter's writer for file descriptor 1, made on first use.

    File descriptor 1 rather than ``sys.stdout``: uWSGI's Python plugin points ``sys.stdout``
    at descriptor 2, and Cloud Foundry tags lines by the stream they came from.

    It batches only inside uWSGI, where the services serve requests and where the exit hooks
    are known to run. Elsewhere (unit tests building apps in-process, command-line tools) each
    line is written at once, so pytest captures it with the test that logged it instead of
    printing it between tests when the thread happens to flush.
    """
    global _stdout
    if _stdout is None:
        with _stdout_lock:
            if _stdout is None:
                _stdout = LineWriter(1, batch=_inside_uwsgi())
    return _stdout


def _inside_uwsgi() -> bool:
    try:
        import uwsgi  # type: ignore[import-not-found]  # noqa: F401  # present only inside uWSGI
    except ImportError:
        return False
    return True


class LineHandler(logging.Handler):
    """A logging handler over a :class:`LineWriter`: WARNING and above are written at once."""

    def __init__(self, writer: LineWriter, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            self._writer.write(line.encode("utf-8", "backslashreplace"), urgent=record.levelno >= logging.WARNING)
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        self._writer.flush()


_second: tuple[int, str] = (-1, "")
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))


def _utc_now() -> str:
    """``2026-01-31T12:00:00.123Z``, at a third of the cost of ``strftime`` per line.

    ``strftime`` runs once a second (the cached prefix) and the milliseconds come from a
    table; the profile had the old per-line ``strftime`` cost more than the write itself.
    """
    global _second
    now = time.time()
    whole = int(now)
    cached = _second
    if cached[0] != whole:
        cached = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return cached[1] + _MILLIS[int(now % 1 * 1000)]


class AccessLog:
    """One JSON line per request, queued on the process's :class:`LineWriter`.

    The same shape as :class:`JsonLineFormatter`'s lines (logger ``aerie.access``), without
    the logging machinery, which cost more than the rest of the line on the hot path.
    """

    def __init__(self, service: str, instance_index: int, writer: LineWriter | None = None) -> None:
        static = {
            "level": "INFO",
            "logger": "aerie.access",
            "message": "request",
            "service": service,
            "instance": instance_index,
        }
        self._static = frozenset(static)
        # The fields after ``time`` never change: encoded once, as `"level":"INFO",...,"instance":3`.
        self._static_json = orjson.dumps(static)[1:-1]
        self._writer = writer if writer is not None else stdout_writer()

    def write(self, fields: dict[str, Any]) -> None:
        """Queue the line for ``fields`` (names other than ``time`` and the static ones)."""
        if "time" in fields or not self._static.isdisjoint(fields):
            raise ValueError("access log fields may not repeat the line's own")
        head = b'{"time":"' + _utc_now().encode() + b'",' + self._static_json
        rest = orjson.dumps(fields, default=str, option=orjson.OPT_APPEND_NEWLINE)
        if len(rest) > MAX_ACCESS_FIELD_CHARS:  # a field may be too long (a string is at least a byte a character)
            bounded = {k: _bounded_value(v, MAX_ACCESS_FIELD_CHARS) for k, v in fields.items()}
            rest = orjson.dumps(bounded, default=str, option=orjson.OPT_APPEND_NEWLINE)
        rest = _one_line(rest)
        self._writer.write(head + (b"," + rest[1:] if fields else b"}\n"))


def configure_logging(service: str, instance_index: int, level: str = "INFO", writer: LineWriter | None = None) -> None:
    handler = LineHandler(writer if writer is not None else stdout_writer())
    handler.setFormatter(JsonLineFormatter({"service": service, "instance": instance_index}))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
