"""The stream mule's plumbing: where it listens, and the workers' readiness check of it.

That streams really reach the mule through uWSGI's route (and leave the workers their
threads) is proven over HTTP in service_tests/test_projects_service.py and
test_flags_service.py.
"""

from __future__ import annotations

import socket
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from aerie.sse import client_gone_probe
from aerie.stream_server import StreamsReachable, StreamsUnavailable, socket_path


@pytest.fixture
def fake_uwsgi(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.SimpleNamespace]:
    module = types.SimpleNamespace(opt={})
    monkeypatch.setitem(sys.modules, "uwsgi", module)
    yield module


def test_socket_path_is_where_the_route_sends_streams(fake_uwsgi: types.SimpleNamespace) -> None:
    fake_uwsgi.opt = {"route": b"^/v1/projects/events$ http:/run/aerie-projects-8080.sock"}
    assert socket_path() == "/run/aerie-projects-8080.sock"
    fake_uwsgi.opt = {"route": [b"^/old$ redirect:/new", b"^/v1/flags/stream$ http:/run/aerie-flags-9.sock"]}
    assert socket_path() == "/run/aerie-flags-9.sock"


def test_no_socket_path_without_a_stream_route(fake_uwsgi: types.SimpleNamespace) -> None:
    assert socket_path() is None
    fake_uwsgi.opt = {"route": b"^/x$ http:127.0.0.1:8081"}  # a TCP proxy is not the mule
    assert socket_path() is None


def test_no_socket_path_outside_uwsgi() -> None:
    assert "uwsgi" not in sys.modules
    assert socket_path() is None


def test_ready_only_while_the_mule_listens(tmp_path: Path) -> None:
    path = str(tmp_path / "streams.sock")
    check = StreamsReachable(path)
    with pytest.raises(StreamsUnavailable):
        check()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        check()
    with pytest.raises(StreamsUnavailable):  # the mule died: the file is left, nobody accepts
        check()


def test_a_stream_in_the_mule_asks_waitress_whether_its_client_left() -> None:
    left = [False]
    probe = client_gone_probe({"waitress.client_disconnected": lambda: left[0]})
    assert probe() is False
    left[0] = True
    assert probe() is True
    assert client_gone_probe({})() is False  # neither waitress nor uWSGI: never
