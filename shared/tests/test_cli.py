"""The ``aerie`` command against a real HTTP server that answers as the API does.

The server is ``http.server`` in a thread playing all four services (they share one base
URL here), with the contract's tokens, pages, problem documents and an NDJSON export that
can be made to break off mid-entry, so what is tested is the command's HTTP as sent and
read, not a mock of ``requests``.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from aerie.cli.config import Settings, read_env_file
from aerie.cli.main import main
from aerie.cli.output import Output
from aerie.cli.progress import Progress

CLIENT, SECRET = "plc_ops", "s3cret:+/"


def chain(n: int, tenant_id: str = "ten_1") -> list[dict[str, Any]]:
    """``n`` sealed audit entries as the audit service stores them."""
    entries, prev = [], "0" * 64
    for seq in range(1, n + 1):
        body = {"id": f"evt_{seq}", "seq": seq, "tenant_id": tenant_id, "action": "tenant.updated",
                "occurred_at": f"2026-01-01T00:00:{seq:02d}.000Z", "message": "Grüße", "prev_hash": prev}  # fmt: skip
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        entry = {**body, "hash": hashlib.sha256((prev + canonical).encode()).hexdigest()}
        entries.append(entry)
        prev = entry["hash"]
    return entries


class FakeAerie:
    """What the fake services hold, and what the command sent them."""

    def __init__(self) -> None:
        self.tenants = [
            {"id": f"ten_{i}", "slug": f"t{i}", "name": f"Tenant {i}", "plan": "free", "status": "active"}
            for i in range(1, 4)
        ]
        self.flag = {"key": "checkout", "enabled": True, "default": True, "rollout": None, "version": 3,
                     "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}  # fmt: skip
        self.entries = chain(7)
        self.cut_after: int | None = None  # entries of an export before it breaks off
        self.conflicts = 0  # PUTs answered 412 before one succeeds
        self.valid = True
        self.letters = [
            {"id": "1700000000000-0", "group": "audit", "entry_id": "1699999999999-0", "deliveries": 5,
             "dead_at": "2026-12-03T00:00:00.000Z", "raw": None,
             "event": {"id": "evt_p", "type": "project.created", "tenant_id": "ten_1"}},
        ]  # fmt: skip
        self.requests: list[tuple[str, str, Any]] = []


def problem(status: int, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"type": "about:blank", "title": code, "status": status, "code": code, "detail": detail,
            "request_id": "req-42", **extra}  # fmt: skip


def handler(state: FakeAerie) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            if status >= 400 and isinstance(body, dict) and "code" in body:
                content_type = "application/problem+json"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Request-ID", self.headers.get("X-Request-ID", "none"))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
                return {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            return json.loads(raw) if raw else None

        def _route(self, method: str) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            body = self._body()
            state.requests.append((method, self.path, body))
            if url.path == "/v1/oauth/token":
                expected = "Basic " + base64.b64encode(b"plc_ops:s3cret%3A%2B%2F").decode()
                if self.headers.get("Authorization") != expected:
                    self._send(401, {"error": "invalid_client", "error_description": "Client authentication failed."})
                else:
                    self._send(200, {"access_token": f"tok-{body.get('tenant_id', 'platform')}", "expires_in": 900})
                return
            if not (self.headers.get("Authorization") or "").startswith("Bearer tok-"):
                self._send(401, problem(401, "invalid_token", "No valid token."))
                return
            self._serve(method, url.path, query, body)

        def _serve(self, method: str, path: str, query: dict[str, str], body: Any) -> None:
            by_id = {t["id"]: t for t in state.tenants}
            parts = path.strip("/").split("/")
            if (method, path) == ("GET", "/v1/tenants"):
                start = int(query.get("cursor", 0))
                rows = [t for t in state.tenants if query.get("status") in (None, t["status"])]
                more = start + 2 < len(rows)
                self._send(200, {"items": rows[start : start + 2], "next_cursor": str(start + 2) if more else None})
            elif (method, path) == ("POST", "/v1/tenants"):
                if not body["slug"].islower():
                    errors = [{"field": "slug", "message": "must match ^[a-z0-9][a-z0-9-]{1,62}$"}]
                    self._send(422, problem(422, "validation_error", "The body is not valid.", errors=errors))
                    return
                tenant = {"id": "ten_new", "status": "active", "plan": "free", **body}
                state.tenants.append(tenant)
                self._send(201, tenant)
            elif parts[:2] == ["v1", "tenants"] and len(parts) >= 3:
                tenant = by_id.get(parts[2])
                if tenant is None:
                    self._send(404, problem(404, "not_found", "No such tenant."))
                elif len(parts) == 3:
                    self._send(200, tenant)
                elif parts[3] in ("suspend", "reactivate"):
                    tenant["status"] = "suspended" if parts[3] == "suspend" else "active"
                    self._send(200, tenant)
                elif parts[3] == "clients" and method == "POST":
                    self._send(201, {"client_id": "cli_9", "client_secret": "shown-once", **body})
                elif parts[3] == "clients" and method == "DELETE":
                    self._send(204, b"")
                else:
                    self._send(200, {"items": [{"client_id": "cli_9", "name": "ci", "scopes": ["flags:read"]}]})
            elif path == "/v1/flags/checkout" and method == "GET":
                self._send(200, state.flag)
            elif path == "/v1/flags/checkout" and method == "PUT":
                if state.conflicts:
                    state.conflicts -= 1
                    state.flag = {**state.flag, "version": state.flag["version"] + 1}
                    self._send(412, problem(412, "precondition_failed", "Stale version."))
                    return
                state.flag = {**body, "version": body["version"] + 1, "created_at": "x", "updated_at": "y"}
                self._send(200, state.flag)
            elif path == "/v1/flags/checkout/evaluation":
                self._send(200, {"key": "checkout", "value": state.flag["enabled"], "reason": "DEFAULT"})
            elif path == "/v1/audit/verify":
                head = state.entries[-1]
                self._send(200, {"valid": state.valid, "entries": len(state.entries),
                                 "head": {"seq": head["seq"], "hash": head["hash"]},
                                 "first_invalid_seq": None if state.valid else 4})  # fmt: skip
            elif path == "/v1/audit/events":
                self._send(200, {"items": state.entries[::-1][:1], "next_cursor": None})
            elif path == "/v1/platform/dead-letters":
                rows = [x for x in state.letters if query.get("group") in (None, x["group"])]
                self._send(200, {"items": rows, "next_cursor": None})
            elif parts[:3] == ["v1", "platform", "dead-letters"]:
                letter = next((x for x in state.letters if x["id"] == parts[3]), None)
                if letter is None:
                    self._send(404, problem(404, "not_found", "No dead letter has this id."))
                    return
                if method == "POST":
                    state.letters.remove(letter)
                    self._send(200, {"id": letter["id"], "replayed_as": "1700000000001-0"})
                elif method == "DELETE":
                    state.letters.remove(letter)
                    self._send(204, b"")
                else:
                    self._send(200, letter)
            elif path == "/v1/audit/export":
                self._export()
            else:
                self._send(404, problem(404, "not_found", f"No route {path}."))

        def _export(self) -> None:
            lines = [json.dumps(e, ensure_ascii=False).encode() + b"\n" for e in state.entries]
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Connection", "close")
            self.end_headers()
            if state.cut_after is None:
                self.wfile.write(b"".join(lines))
            else:
                kept = lines[: state.cut_after]
                self.wfile.write(b"".join(kept) + lines[state.cut_after][:20])
            self.close_connection = True

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PUT(self) -> None:
            self._route("PUT")

        def do_DELETE(self) -> None:
            self._route("DELETE")

    return Handler


@pytest.fixture
def api() -> Iterator[tuple[FakeAerie, str]]:
    state = FakeAerie()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler(state))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def env(api, monkeypatch, tmp_path) -> FakeAerie:
    """The fake's URLs and the platform client in the environment, as an operator's shell has them."""
    state, url = api
    for name in list(__import__("os").environ):
        if name.startswith("AERIE_"):
            monkeypatch.delenv(name)
    for service in ("TENANTS", "PROJECTS", "FLAGS", "AUDIT"):
        monkeypatch.setenv(f"AERIE_{service}_URL", url + "/")
    monkeypatch.setenv("AERIE_BOOTSTRAP_CLIENT_ID", CLIENT)
    monkeypatch.setenv("AERIE_BOOTSTRAP_CLIENT_SECRET", SECRET)
    monkeypatch.chdir(tmp_path)
    return state


def aerie(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# Parsing and configuration


def test_shared_options_go_before_the_resource_or_after_the_command(env, capsys):
    before = aerie(capsys, "--json", "tenants", "list")
    after = aerie(capsys, "tenants", "list", "--json")
    assert before == after and before[0] == 0
    assert [t["slug"] for t in json.loads(before[1])] == ["t1", "t2", "t3"], "every page, in order"


def test_a_command_is_required_and_bad_usage_exits_2(env, capsys):
    for argv in ([], ["tenants"], ["flags", "rollout", "checkout", "150"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
    assert "must be between 0 and 100" in capsys.readouterr().err


def test_settings_come_from_flags_then_environment_then_the_env_file(tmp_path):
    (tmp_path / ".aerie").mkdir()
    (tmp_path / ".aerie" / "local.env").write_text(
        "# written by make run\nAERIE_TENANTS_URL=http://file:1/\nAERIE_FLAGS_URL='http://file:2'\n"
        'export AERIE_BOOTSTRAP_CLIENT_ID=boot\nAERIE_BOOTSTRAP_CLIENT_SECRET="b s"\n'
    )
    inner = tmp_path / "deep" / "er"
    inner.mkdir(parents=True)
    s = Settings.resolve(flags={}, environ={"AERIE_FLAGS_URL": "http://env:2"}, env_file=None, cwd=inner)
    assert s.urls == {"tenants": "http://file:1", "flags": "http://env:2"}, "found from a folder below"
    assert s.credentials() == ("boot", "b s")
    s = Settings.resolve(
        flags={"tenants_url": "http://flag:1"},
        environ={"AERIE_CLIENT_ID": "ops", "AERIE_CLIENT_SECRET": "o"},
        env_file=None,
        cwd=inner,
    )
    assert s.url("tenants") == "http://flag:1" and s.credentials() == ("ops", "o"), "a client of one's own first"
    assert read_env_file(tmp_path / ".aerie" / "local.env")["AERIE_FLAGS_URL"] == "http://file:2"


def test_what_is_not_configured_is_named_with_how_to_give_it(env, capsys, monkeypatch):
    monkeypatch.delenv("AERIE_FLAGS_URL")
    status, out, err = aerie(capsys, "flags", "show", "checkout")
    assert status == 2 and out == ""
    assert err == "aerie: error: no URL for the flags service: pass --flags-url or set AERIE_FLAGS_URL" + (
        " (or run `make run`, which writes .aerie/local.env)\n"
    )
    status, _, err = aerie(capsys, "--env-file", "missing.env", "tenants", "list")
    assert status == 2 and "missing.env does not exist" in err


# Output


def test_tables_align_their_columns_and_show_absent_values_as_a_dash(env, capsys):
    env.tenants[1]["plan"] = None
    status, out, _ = aerie(capsys, "tenants", "list")
    lines = out.splitlines()
    assert status == 0 and lines[0].split() == ["ID", "SLUG", "NAME", "PLAN", "STATUS", "CREATED"]
    assert lines[2].split()[:4] == ["ten_2", "t2", "Tenant", "2"] and " - " in lines[2]
    assert len({line.index("t1" if i == 1 else "SLUG") for i, line in enumerate(lines[:2])}) == 1


def test_an_empty_list_says_so_and_json_is_an_empty_list(env, capsys):
    env.tenants.clear()
    assert aerie(capsys, "tenants", "list")[1] == "(none)\n"
    assert json.loads(aerie(capsys, "tenants", "list", "--json")[1]) == []


# Errors


def test_a_problem_document_is_one_line_with_code_detail_fields_and_request_id(env, capsys):
    status, out, err = aerie(capsys, "tenants", "create", "NotASlug")
    assert (status, out) == (1, "")
    assert err == (
        "aerie: error: tenants: 422 validation_error: The body is not valid."
        " - slug: must match ^[a-z0-9][a-z0-9-]{1,62}$ (request id req-42)\n"
    )


def test_refused_credentials_are_an_oauth_error_line(env, capsys, monkeypatch):
    monkeypatch.setenv("AERIE_BOOTSTRAP_CLIENT_SECRET", "wrong")
    status, _, err = aerie(capsys, "tenants", "list")
    assert status == 1
    assert err.startswith("aerie: error: tenants: 401 invalid_client: getting a token: Client authentication failed.")
    assert err.count("\n") == 1


def test_a_service_that_is_away_is_one_line_naming_it(env, capsys):
    status, _, err = aerie(capsys, "tenants", "list", "--tenants-url", "http://127.0.0.1:9")
    assert (
        status == 1
        and err == "aerie: error: cannot reach the tenants service at http://127.0.0.1:9: connection refused\n"
    )


def test_the_installed_command_prints_no_traceback_and_starts_without_falcon_or_redis(env):
    code = (
        "import sys; from aerie.cli.main import build_parser; build_parser();"
        "print(sorted(m for m in ('falcon', 'redis', 'requests', 'uwsgi') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]", "building the parser loads none of them"
    done = subprocess.run(
        [sys.executable, "-m", "aerie.cli", "tenants", "show", "nope"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr == "aerie: error: no tenant has the id or slug 'nope'\n"


# Commands


def test_tenants_are_found_by_slug_and_suspended_and_reactivated(env, capsys):
    status, out, _ = aerie(capsys, "tenants", "suspend", "t3")
    assert status == 0 and out == "tenant t3 (ten_3) is suspended\n"
    assert ("POST", "/v1/tenants/ten_3/suspend", None) in env.requests
    assert json.loads(aerie(capsys, "tenants", "reactivate", "ten_3", "--json")[1])["status"] == "active"


def test_a_new_clients_secret_is_printed_once_with_a_warning_on_stderr(env, capsys):
    status, out, err = aerie(capsys, "clients", "create", "t1", "--name", "ci", "--scope", "flags:read,audit:read")
    assert status == 0 and "client_secret  shown-once" in out
    assert "shown only this once" in err and "shown-once" not in err
    assert env.requests[-1][2] == {"name": "ci", "scopes": ["flags:read", "audit:read"]}
    status, out, _ = aerie(capsys, "clients", "revoke", "t1", "cli_9")
    assert status == 0 and env.requests[-1][:2] == ("DELETE", "/v1/tenants/ten_1/clients/cli_9")


def test_kill_writes_the_definition_back_at_the_version_it_read_and_retries_a_conflict(env, capsys):
    env.conflicts = 1
    status, out, _ = aerie(capsys, "flags", "kill", "checkout")
    assert status == 0 and out == "flag checkout is off (killed), version 5\n"
    puts = [body for method, _, body in env.requests if method == "PUT"]
    assert [p["version"] for p in puts] == [3, 4], "read again after a 412, then written at the newer version"
    assert puts[-1]["enabled"] is False and "updated_at" not in puts[-1]


def test_rollout_keeps_the_stickiness_unless_told(env, capsys):
    env.flag["rollout"] = {"percentage": 10, "stickiness": "tenant_id"}
    flag = json.loads(aerie(capsys, "flags", "rollout", "checkout", "50", "--json")[1])
    assert flag["rollout"] == {"percentage": 50, "stickiness": "tenant_id"}


def test_evaluate_asks_as_the_tenant_with_a_tenant_bound_token(env, capsys):
    status, out, _ = aerie(capsys, "flags", "evaluate", "checkout", "--tenant", "t2", "--user-id", "u1")
    assert status == 0 and "reason  DEFAULT" in out
    assert ("POST", "/v1/oauth/token", {"grant_type": "client_credentials", "tenant_id": "ten_2"}) in env.requests


def test_verify_exits_3_when_the_chain_is_broken(env, capsys):
    status, out, _ = aerie(capsys, "audit", "verify", "t1")
    assert status == 0 and "chain      valid" in out
    env.valid = False
    status, out, _ = aerie(capsys, "audit", "verify", "t1")
    assert status == 3 and "INVALID from seq 4" in out


# The resumable export


def test_an_interrupted_export_resumes_and_holds_every_entry_once(env, capsys, tmp_path):
    target = tmp_path / "out" / "trail.ndjson"
    env.cut_after = 3
    status, _, err = aerie(capsys, "audit", "export", "t1", "-o", str(target))
    assert status == 1 and "run the same command again to resume" in err and err.count("\n") == 1
    partial = tmp_path / "out" / "trail.ndjson.partial"
    assert not target.exists() and partial.read_bytes().count(b"\n") == 3

    env.cut_after = 5
    assert aerie(capsys, "audit", "export", "t1", "-o", str(target))[0] == 1
    env.cut_after = None
    status, out, err = aerie(capsys, "audit", "export", "t1", "-o", str(target))
    assert status == 0 and "resuming after seq 5 (5 entries already" in err
    assert out == f"7 entries (to seq 7) in {target}\n"
    lines = target.read_bytes().splitlines()
    assert [json.loads(line) for line in lines] == env.entries, "each entry once, in order, byte for byte"
    assert not partial.exists() and not (tmp_path / "out" / "trail.ndjson.partial.json").exists()

    status, _, err = aerie(capsys, "audit", "export", "t1", "-o", str(target))
    assert status == 1 and "pass --overwrite" in err
    assert aerie(capsys, "audit", "export", "t1", "-o", str(target), "--overwrite")[0] == 0


def test_ctrl_c_during_an_export_keeps_what_was_written_for_the_next_run(env, capsys, monkeypatch):
    drawn = []

    def interrupt(self: Progress, done: int, count: int, *, force: bool = False) -> None:
        drawn.append(done)
        if len(drawn) == 4:
            raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(Progress, "update", interrupt)
        status, _, err = aerie(capsys, "audit", "export", "t1", "-o", "x.ndjson")
    assert status == 130 and err == "aerie: error: interrupted after seq 4; run the same command again to resume\n"
    assert len(Path("x.ndjson.partial").read_bytes().splitlines()) == 4
    status, _, err = aerie(capsys, "audit", "export", "t1", "-o", "x.ndjson", "--json")
    assert status == 0 and "resuming after seq 4" in err
    assert [json.loads(line)["seq"] for line in Path("x.ndjson").read_bytes().splitlines()] == list(range(1, 8))


def test_a_partial_export_is_not_continued_with_other_filters_or_another_trail(env, capsys, tmp_path):
    env.cut_after = 2
    aerie(capsys, "audit", "export", "t1", "-o", "x.ndjson")
    status, _, err = aerie(capsys, "audit", "export", "t1", "-o", "x.ndjson", "--action", "tenant.*")
    assert status == 2 and "another trail or other filters" in err
    env.cut_after = None
    status, _, err = aerie(capsys, "audit", "export", "t1", "-o", "x.ndjson", "--action", "tenant.*", "--restart")
    assert status == 0 and "resuming" not in err
    assert len(Path("x.ndjson").read_text().splitlines()) == 7


def test_a_partial_export_of_a_trail_that_changed_is_refused(env, capsys):
    env.cut_after = 4
    aerie(capsys, "audit", "export", "t1", "-o", "x.ndjson")
    env.entries = chain(7, tenant_id="ten_other")
    env.cut_after = None
    status, _, err = aerie(capsys, "audit", "export", "t1", "-o", "x.ndjson")
    assert status == 1 and "entry 4 of the trail is not the one in" in err and "--restart" in err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_only():
    tty, pipe = Terminal(), io.StringIO()
    for stream in (tty, pipe):
        bar = Progress(stream, total=200)
        bar.update(50, 50, force=True)
        bar.update(200, 200, force=True)
        bar.close()
    assert pipe.getvalue() == ""
    assert "\r[#######-----" in tty.getvalue() and " 25%  seq 50/200" in tty.getvalue()
    assert tty.getvalue().endswith("100%  seq 200/200  200 entries" + tty.getvalue().split("entries")[-1])
    assert tty.getvalue().endswith("\n")


def test_progress_redraws_at_most_ten_times_a_second():
    tty = Terminal()
    bar = Progress(tty, total=10_000)
    started = time.monotonic()
    for i in range(10_000):
        bar.update(i, i)
    drawn = tty.getvalue().count("\r")
    assert drawn <= 1 + (time.monotonic() - started) * 10


def test_output_cells_are_readable():
    buf = io.StringIO()
    Output(out=buf).record({"scopes": ["a", "b"], "rollout": {"percentage": 5}, "off": False, "rule": None})
    assert buf.getvalue().splitlines() == ["scopes   a, b", 'rollout  {"percentage":5}', "off      false", "rule     -"]


def test_dead_letters_are_listed_with_their_event_and_replayed_once(env, capsys):
    status, table, _ = aerie(capsys, "events", "dead")
    assert status == 0
    assert all(text in table for text in ("1700000000000-0", "project.created", "ten_1", "evt_p", "audit"))
    status, out, _ = aerie(capsys, "events", "replay", "1700000000000-0")
    assert status == 0 and "back on the event stream as entry 1700000000001-0" in out
    assert ("POST", "/v1/platform/dead-letters/1700000000000-0/replay", None) in env.requests
    status, _, err = aerie(capsys, "events", "replay", "1700000000000-0")
    assert status != 0 and "not_found" in err
    status, out, _ = aerie(capsys, "events", "dead", "--group", "audit", "--json")
    assert status == 0 and json.loads(out) == []
