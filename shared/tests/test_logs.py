"""JSON log lines: their format, and the per-process writer that batches them.

Every test writes through :class:`aerie.logs.LineWriter` to a real file descriptor (a pipe
or a file), the code path production uses for stdout; the last test stops a real uWSGI
service and finds every line of its last requests in its log.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import sys
import threading
import time
import types
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from aerie import logs
from aerie.local.redis_server import RedisServer, free_port
from aerie.logs import (
    MAX_ACCESS_FIELD_CHARS,
    MAX_EXC_INFO_CHARS,
    MAX_LOG_FIELD_CHARS,
    PIPE_BUF,
    AccessLog,
    LineWriter,
    configure_logging,
    truncated,
)
from aerie.testing.keys import TestKey
from aerie.testing.process import UwsgiService

REPO = Path(__file__).resolve().parents[2]
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class PipeReader:
    """The read end of a pipe, drained by a thread (a full pipe would block the writer)."""

    def __init__(self) -> None:
        self._read, self.fd = os.pipe()
        self._chunks: list[bytes] = []
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while chunk := os.read(self._read, 65536):
            self._chunks.append(chunk)

    def close(self) -> bytes:
        """Close the write end and return everything that came through."""
        os.close(self.fd)
        self._thread.join(10)
        os.close(self._read)
        return b"".join(self._chunks)


@pytest.fixture
def pipe() -> Iterator[PipeReader]:
    reader = PipeReader()
    yield reader
    if reader._thread.is_alive():
        reader.close()


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    path = tmp_path / "out.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    yield path, fd
    os.close(fd)


FIELDS = {
    "request_id": "req-1",
    "tenant_id": None,
    "client_id": "cli-1",
    "method": "GET",
    "path": "/v1/things/1",
    "status": 200,
    "duration_ms": 1.25,
}


# --- format ------------------------------------------------------------------------------


def test_an_access_line_has_the_documented_fields_in_order(log_file, monkeypatch):
    path, fd = log_file
    monkeypatch.setattr(logs.time, "time", lambda: 1_700_000_000.125)
    writer = LineWriter(fd)
    AccessLog("tenants", 3, writer).write(FIELDS)
    writer.close()
    assert path.read_bytes() == (
        b'{"time":"2023-11-14T22:13:20.125Z","level":"INFO","logger":"aerie.access","message":"request",'
        b'"service":"tenants","instance":3,"request_id":"req-1","tenant_id":null,"client_id":"cli-1",'
        b'"method":"GET","path":"/v1/things/1","status":200,"duration_ms":1.25}\n'
    )


def test_an_access_line_is_one_json_object_whatever_the_fields(log_file):
    path, fd = log_file
    writer = LineWriter(fd)
    access = AccessLog("flags", 0, writer)
    access.write({})
    access.write({"path": 'a"b\\c\u2028', "odd": object, "n": None})
    writer.close()
    first, second = (json.loads(line) for line in path.read_bytes().splitlines())
    assert list(first) == ["time", "level", "logger", "message", "service", "instance"]
    assert second["path"] == 'a"b\\c\u2028' and second["odd"] == str(object) and second["n"] is None


#: Valid unescaped in JSON, but line ends to str.splitlines (and to many log viewers).
LINE_BREAKS = "\u0085\u2028\u2029"
#: Other characters from U+2000..U+203F (an en dash, a closing quote): left as they are.
PUNCTUATION = "\u2013\u2019"


def test_a_path_with_unicode_line_breaks_stays_on_its_line(log_file):
    path, fd = log_file
    writer = LineWriter(fd)
    access = AccessLog("tenants", 0, writer)
    forged = f'/v1/x{LINE_BREAKS}{{"level":"ERROR","message":"forged"}}{PUNCTUATION}'
    access.write({"path": forged})
    access.write({"path": f"/v1/plain{PUNCTUATION}"})
    writer.close()
    text = path.read_text()
    assert PUNCTUATION in text and not any(ch in text for ch in LINE_BREAKS)
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["path"] for line in lines] == [forged, f"/v1/plain{PUNCTUATION}"]


def test_an_application_log_message_with_unicode_line_breaks_stays_on_its_line(log_file):
    path, fd = log_file
    writer = LineWriter(fd, batch=False)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("flags", 0, "INFO", writer=writer)
        logging.getLogger("aerie.test").warning("bad %s", f"a{LINE_BREAKS}b", extra={"path": LINE_BREAKS})
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        writer.close()
    (line,) = (json.loads(line) for line in path.read_text().splitlines())
    assert line["message"] == f"bad a{LINE_BREAKS}b" and line["path"] == LINE_BREAKS


def test_an_access_line_cuts_long_fields_and_says_how_long_they_were(log_file):
    path, fd = log_file
    writer = LineWriter(fd)
    access = AccessLog("tenants", 0, writer)
    huge = "/v1/" + "p" * 900_000
    access.write({**FIELDS, "path": huge, "agent": "a" * 5000, "odd": types.SimpleNamespace(x="o" * 5000)})
    access.write({**FIELDS, "path": "/v1/" + "q" * (MAX_ACCESS_FIELD_CHARS - 4)})  # at the limit: whole
    writer.close()
    long_line, at_limit = path.read_bytes().splitlines()
    assert len(long_line) < 4 * MAX_ACCESS_FIELD_CHARS
    line = json.loads(long_line)
    assert line["path"].startswith("/v1/ppp") and line["path"].endswith("…[truncated, 900004 chars]")
    assert len(line["path"]) == MAX_ACCESS_FIELD_CHARS
    assert line["agent"].endswith("…[truncated, 5000 chars]") and len(line["odd"]) <= MAX_ACCESS_FIELD_CHARS
    assert {k: line[k] for k in FIELDS if k != "path"} == {k: v for k, v in FIELDS.items() if k != "path"}
    assert json.loads(at_limit)["path"] == "/v1/" + "q" * (MAX_ACCESS_FIELD_CHARS - 4)


def test_an_application_line_cuts_a_long_message_fields_and_traceback(log_file):
    path, fd = log_file
    writer = LineWriter(fd, batch=False)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("tenants", 0, "INFO", writer=writer)
        log = logging.getLogger("aerie.test")
        log.warning("client %s refused", "c" * 900_000, extra={"client_id": "c" * 900_000, "n": 3})
        try:
            raise ValueError("v" * 900_000 + " the end")
        except ValueError:
            log.exception("failed")
        log.info("short", extra={"client_id": "cli_1"})
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        writer.close()
    warned, failed, short = (json.loads(line) for line in path.read_text().splitlines())
    assert len(warned["message"]) == len(warned["client_id"]) == MAX_LOG_FIELD_CHARS
    assert warned["message"].startswith("client ccc") and warned["message"].endswith("…[truncated, 900015 chars]")
    assert warned["n"] == 3 and warned["level"] == "WARNING"
    trace = failed["exc_info"]
    assert len(trace) == MAX_EXC_INFO_CHARS
    assert trace.startswith("Traceback") and trace.endswith("vvv the end")  # the start and the end, where the error is
    assert short["message"] == "short" and short["client_id"] == "cli_1"


@pytest.mark.parametrize(
    ("text", "limit", "keep_end", "expected"),
    [
        ("abc", 3, False, "abc"),
        ("a" * 100, 40, False, "a" * 17 + "…[truncated, 100 chars]"),
        ("a" * 50 + "b" * 50, 43, True, "a" * 10 + "…[truncated, 100 chars]" + "b" * 10),
        ("a" * 100, 5, False, "…[truncated, 100 chars]"),  # shorter than the marker: the marker alone
    ],
)
def test_truncated(text, limit, keep_end, expected):
    assert truncated(text, limit, keep_end=keep_end) == expected


@pytest.mark.parametrize("name", ["time", "level", "service", "instance"])
def test_access_fields_may_not_repeat_the_lines_own(log_file, name):
    _, fd = log_file
    writer = LineWriter(fd)
    with pytest.raises(ValueError):
        AccessLog("flags", 0, writer).write({name: "x"})
    writer.close()


def test_the_cached_timestamp_equals_strftime_at_every_moment(monkeypatch):
    moments = [1_700_000_000.0, 1_700_000_000.9995, 1_700_000_001.0004, 0.5]
    moments += [random.uniform(0, 4_000_000_000) for _ in range(2000)]
    for now in moments:
        monkeypatch.setattr(logs.time, "time", lambda now=now: now)
        expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        assert logs._utc_now() == expected


def test_application_logs_keep_their_format_and_warnings_are_written_at_once(log_file):
    path, fd = log_file
    writer = LineWriter(fd, interval=60)  # the thread never flushes within this test
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("flags", 1, "INFO", writer=writer)
        logging.getLogger("aerie.test").info("queued", extra={"tenant_id": "t-1"})
        assert path.read_bytes() == b""  # INFO waits for the batch
        try:
            raise KeyError("boom")
        except KeyError:
            logging.getLogger("aerie.test").exception("failed")
        lines = [json.loads(line) for line in path.read_text().splitlines()]  # no flush, no close
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        writer.close()
    assert [line["message"] for line in lines] == ["queued", "failed"]  # in order, the INFO first
    first, error = lines
    assert list(first) == ["time", "level", "logger", "message", "service", "instance", "tenant_id"]
    assert TIME_RE.match(first["time"]) and first["level"] == "INFO" and first["tenant_id"] == "t-1"
    assert (error["level"], error["logger"], error["service"], error["instance"]) == ("ERROR", "aerie.test", "flags", 1)
    assert "KeyError: 'boom'" in error["exc_info"]


# --- the writer ----------------------------------------------------------------------------


def test_lines_from_many_threads_come_out_whole_in_order_and_all_there(pipe):
    writer = LineWriter(pipe.fd, interval=0.005, max_pending=500)
    threads, per_thread = 8, 2500
    # Some lines longer than PIPE_BUF, which must still be written whole, alone.
    pads = [b"x" * n for n in (10, 200, 1000, PIPE_BUF + 100)]
    start = threading.Barrier(threads)

    def produce(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            writer.write(b'{"t":%d,"i":%d,"pad":"%s"}\n' % (t, i, pads[(t + i) % len(pads)]))

    workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    writer.close()
    out = pipe.close()
    assert out.endswith(b"\n")
    seen: dict[int, list[int]] = {t: [] for t in range(threads)}
    for line in out.splitlines():
        entry = json.loads(line)  # a split or interleaved line would not parse
        assert entry["pad"].encode() in pads
        seen[entry["t"]].append(entry["i"])
    assert seen == {t: list(range(per_thread)) for t in range(threads)}
    assert writer.dropped == 0


def test_each_write_is_whole_lines_within_pipe_buf_unless_one_line_is_longer(monkeypatch, log_file):
    _, fd = log_file
    writes: list[bytes] = []

    def record(target: int, data: memoryview) -> int:
        writes.append(bytes(data))
        return len(data)

    monkeypatch.setattr(logs, "os", types.SimpleNamespace(write=record, getpid=os.getpid))
    writer = LineWriter(fd, interval=60)
    lines = [b"a" * random.randint(1, 900) + b"\n" for _ in range(300)] + [b"b" * (3 * PIPE_BUF) + b"\n"]
    lines += [b"c" * 50 + b"\n" for _ in range(40)]
    for line in lines:
        writer.write(line)
    writer.flush()
    assert b"".join(writes) == b"".join(lines)
    assert len(writes) < len(lines) / 5  # batched
    for chunk in writes:
        assert chunk.endswith(b"\n")
        assert len(chunk) <= PIPE_BUF or chunk.count(b"\n") == 1
    writer.close()


def test_the_thread_writes_queued_lines_within_the_interval(log_file):
    path, fd = log_file
    writer = LineWriter(fd, interval=0.05)
    writer.write(b"soon\n")
    deadline = time.monotonic() + 5
    while path.read_bytes() != b"soon\n":
        assert time.monotonic() < deadline, "the background thread never wrote the line"
        time.sleep(0.01)
    writer.close()


def test_a_full_queue_is_written_by_the_caller(log_file):
    path, fd = log_file
    writer = LineWriter(fd, interval=60, max_pending=10)
    for i in range(9):
        writer.write(b"%d\n" % i)
    assert path.read_bytes() == b""
    writer.write(b"9\n")
    assert path.read_bytes().splitlines() == [b"%d" % i for i in range(10)]
    writer.close()


def test_close_writes_the_queue_and_later_lines_go_straight_out(log_file):
    path, fd = log_file
    writer = LineWriter(fd, interval=60)
    writer.write(b"one\n")
    writer.close()
    assert path.read_bytes() == b"one\n"
    writer.write(b"two\n")
    assert path.read_bytes() == b"one\ntwo\n"


def test_a_broken_pipe_counts_lost_lines_instead_of_failing_the_request():
    read, write = os.pipe()
    os.close(read)  # nobody will ever read: write(2) fails with EPIPE
    try:
        writer = LineWriter(write, interval=60)
        writer.write(b"lost-1\n")
        writer.write(b"lost-2\n", urgent=True)  # would raise into the caller if not caught
        assert writer.dropped == 2
        writer.close()
    finally:
        os.close(write)


def test_a_process_that_did_not_start_the_thread_drops_inherited_lines_and_starts_its_own(log_file):
    """What a fork without Python's at-fork hooks leaves behind (uWSGI without py-call-osafterfork)."""
    path, fd = log_file
    writer = LineWriter(fd, interval=0.05)
    writer.write(b"parent's line\n")
    writer._owner = -1  # as if this process were a fresh fork of another one
    writer._stop.set()  # ...whose thread does not exist here
    writer.write(b"child's line\n")
    deadline = time.monotonic() + 5
    while path.read_bytes() != b"child's line\n":
        assert time.monotonic() < deadline, path.read_bytes()
        time.sleep(0.01)
    writer.close()


def test_closing_a_copy_inherited_through_fork_does_not_write_the_parents_lines(log_file):
    path, fd = log_file
    writer = LineWriter(fd, interval=60)
    writer.write(b"parent's line\n")
    writer._owner = -1  # as if inherited by a process that exits without logging (atexit closes it)
    writer.close()
    assert path.read_bytes() == b""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_writes_its_own_lines_and_not_its_parents(log_file):
    path, fd = log_file
    writer = LineWriter(fd, interval=60)
    writer.write(b"parent-1\n")
    pid = os.fork()
    if pid == 0:  # the child: its own thread, its own queue
        try:
            writer.write(b"child-1\n")
        finally:
            writer.close()
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    writer.write(b"parent-2\n")
    writer.close()
    assert sorted(path.read_bytes().splitlines()) == [b"child-1", b"parent-1", b"parent-2"]


def test_without_batching_each_line_is_written_at_once_and_no_thread_runs(log_file, monkeypatch):
    path, fd = log_file
    # No Thread to start: starting one would fail the write.
    monkeypatch.setattr(logs, "threading", types.SimpleNamespace(Lock=threading.Lock, Event=threading.Event))
    writer = LineWriter(fd, batch=False)
    writer.write(b"now\n")
    assert path.read_bytes() == b"now\n"
    writer.close()


def test_stdout_is_one_writer_per_interpreter_batching_only_inside_uwsgi():
    assert logs.stdout_writer() is logs.stdout_writer()
    assert logs.stdout_writer().fd == 1
    assert logs.stdout_writer()._sync  # pytest is not uWSGI: lines go out with the test that logged them


# --- a real uWSGI service ------------------------------------------------------------------

needs_uwsgi = pytest.mark.skipif(
    not (Path(sys.executable).parent / "uwsgi").exists() and shutil.which("uwsgi") is None,
    reason="pyuwsgi is not installed (pip install -e 'shared[local]')",
)


@needs_uwsgi
@pytest.mark.timeout(90)
def test_a_graceful_stop_writes_the_last_requests_lines(redis_server: RedisServer, tmp_path: Path):
    # Each worker imports this before the app (uWSGI's --import, given as UWSGI_IMPORT): its
    # stdout writer then never flushes on a timer, so every line in the log came out at exit.
    (tmp_path / "hold_log_lines.py").write_text(
        "from aerie import logs\n\n"
        "assert logs._inside_uwsgi() and not logs.stdout_writer()._sync  # batching, as in production\n"
        "logs._stdout = logs.LineWriter(1, interval=3600)\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "UWSGI_IMPORT": "hold_log_lines",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "VCAP_SERVICES": "{}",  # not whatever binding this shell has: REDIS_URL below
        "REDIS_URL": redis_server.url,
        "AERIE_TENANTS_URL": url,
        "AERIE_ISSUER": url,
        "AERIE_SIGNING_KEYS": json.dumps(TestKey("log-k1").private_jwks()),
        "AERIE_BOOTSTRAP_CLIENT_ID": "aerie-bootstrap",
        "AERIE_BOOTSTRAP_CLIENT_SECRET": "log-test-bootstrap-secret-0123456789abcdef",
    }
    service = UwsgiService(REPO / "services" / "tenants", port, env, log_path=tmp_path / "tenants.log")
    service.start(ready_path="/health")
    try:
        service.wait_workers_loaded(2)
        ids = [f"last-{uuid.uuid4().hex}" for _ in range(40)]

        def get(request_id: str) -> None:
            # A new connection each time: http-socket closes it anyway, and both workers answer.
            assert requests.get(f"{url}/health", headers={"X-Request-ID": request_id}, timeout=5).status_code == 200

        callers = [threading.Thread(target=get, args=(request_id,)) for request_id in ids]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
        assert ids[0] not in service.log_tail(2_000_000)  # still queued in the workers
    finally:
        code = service.stop()
    assert code == 0, service.log_tail()
    assert "Traceback" not in service.log_tail(2_000_000)  # a failed --import only logs one
    access = {}
    for line in service.log_tail(2_000_000).splitlines():
        if line.startswith('{"time"'):
            entry = json.loads(line)
            if entry.get("logger") == "aerie.access":
                access[entry["request_id"]] = entry
    missing = [request_id for request_id in ids if request_id not in access]
    assert not missing, f"{len(missing)} of {len(ids)} lines lost:\n{service.log_tail()}"
    assert {access[request_id]["status"] for request_id in ids} == {200}
