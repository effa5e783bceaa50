"""The local stack behind ``make run``: Redis and every service under uWSGI, as on Cloud Foundry.

Each service gets the environment Cloud Foundry would give it (``PORT``,
``VCAP_APPLICATION``, a ``p.redis`` binding in ``VCAP_SERVICES``) and is started with the
same ``uwsgi --ini uwsgi.ini`` as its manifest, so what works here works after ``cf push``.
Secrets are made once and kept under ``.aerie/`` (see :mod:`aerie.local.secrets`);
``.aerie/local.env`` tells the end-to-end suite, benchmarks and scripts where it all runs.

Use it from a shell (``python -m aerie.local.stack``) or from code::

    with LocalStack.isolated(repo_root, tmp_path) as stack:
        requests.get(stack.env()["AERIE_TENANTS_URL"] + "/ready")
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from aerie.local.redis_server import RedisServer, free_port
from aerie.local.secrets import LocalSecrets, load_or_create, write_private_file
from aerie.suite.layout import KNOWN_SERVICES, RepoNotFound, find_repo_root, service_order
from aerie.suite.version import describe

__all__ = [
    "DEFAULT_PORTS",
    "DEFAULT_REDIS_PORT",
    "KNOWN_SERVICES",
    "LocalStack",
    "StackError",
    "discover_services",
    "find_repo_root",
    "main",
    "resolve_ports",
]

DEFAULT_PORTS: Mapping[str, int] = {"tenants": 8081, "projects": 8082, "flags": 8083, "audit": 8084}
DEFAULT_REDIS_PORT = 6380
HOST = "127.0.0.1"
#: Variables of the caller's shell a service must not inherit: the stack sets them, or they
#: would point a service at another Redis or issuer than the stack's own.
_NOT_INHERITED_PREFIXES = ("VCAP_", "CF_")
_NOT_INHERITED = {
    "PORT",
    "REDIS_URL",
    "VERSION",
    "AERIE_COMMIT",
    "AERIE_REDIS_SERVICE",
    "AERIE_ISSUER",
    "AERIE_SIGNING_KEYS",
    "AERIE_BOOTSTRAP_CLIENT_ID",
    "AERIE_BOOTSTRAP_CLIENT_SECRET",
    "AERIE_SERVICE_CLIENTS",
    "AERIE_CLIENT_ID",
    "AERIE_CLIENT_SECRET",
}


class StackError(RuntimeError):
    """The stack could not start or lost a process; the message says which and why."""


def discover_services(repo_root: Path) -> list[str]:
    """Every ``services/<name>/`` with a ``uwsgi.ini``: a folder still being written is skipped."""
    services_dir = Path(repo_root) / "services"
    found = (
        [p.name for p in services_dir.iterdir() if p.is_dir() and (p / "uwsgi.ini").is_file()]
        if services_dir.is_dir()
        else []
    )
    return service_order(found)


def _env_key(name: str) -> str:
    return name.upper().replace("-", "_")


def resolve_ports(
    services: Sequence[str],
    *,
    overrides: Mapping[str, int | None] | None = None,
    base_port: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """The port of every known and discovered service.

    Precedence, most specific first: ``--port-<name>``, ``--base-port`` (+ position in the
    start order), ``AERIE_<NAME>_PORT``, ``AERIE_BASE_PORT``, the default (8081..8084, then on).
    """
    env = os.environ if environ is None else environ
    overrides = overrides or {}
    names = service_order(list(dict.fromkeys([*KNOWN_SERVICES, *services])))
    env_base = _port_from_env(env, "AERIE_BASE_PORT")
    ports: dict[str, int] = {}
    for index, name in enumerate(names):
        default = DEFAULT_PORTS.get(name, DEFAULT_PORTS["tenants"] + index)
        candidates = (
            overrides.get(name),
            base_port + index if base_port is not None else None,
            _port_from_env(env, f"AERIE_{_env_key(name)}_PORT"),
            env_base + index if env_base is not None else None,
            default,
        )
        ports[name] = next(p for p in candidates if p is not None)
    return ports


def _port_from_env(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if not raw:
        return None
    try:
        port = int(raw)
    except ValueError:
        raise StackError(f"{name} must be a port number, got {raw!r}") from None
    if not 0 < port < 65536:
        raise StackError(f"{name} must be between 1 and 65535, got {port}")
    return port


def _git(repo_root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=repo_root, capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _port_is_free(port: int) -> bool:
    """Whether a listener could bind ``port`` (uWSGI binds every interface, so check that)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Start children with SIGINT blocked, so a Ctrl-C in the terminal reaches only the stack.

    A blocked signal mask survives fork and exec, and redis-server does not unblock SIGINT:
    Redis then stops when the stack tells it to, after the services, instead of with them.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@dataclass
class _Service:
    name: str
    port: int
    directory: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None
    pump: threading.Thread | None = None
    stopping: bool = field(default=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


class LocalStack:
    """Redis plus every discovered service, started and stopped as one.

    ``start()`` returns once every service answers ``GET /ready`` with 200, or raises
    :class:`StackError` (with the failing service's log tail) after stopping whatever it
    had started. ``stop()`` is graceful, idempotent and safe to call from ``finally``.
    """

    def __init__(
        self,
        repo_root: Path,
        state_dir: Path | None = None,
        *,
        services: Sequence[str] | None = None,
        ports: Mapping[str, int] | None = None,
        redis_port: int = DEFAULT_REDIS_PORT,
        redis_appendfsync: str = "everysec",
        ready_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        verbose: bool = False,
        extra_env: Mapping[str, str] | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.repo_root = Path(repo_root).resolve()
        self.state_dir = Path(state_dir) if state_dir is not None else self.repo_root / ".aerie"
        self.services = service_order(list(services)) if services is not None else discover_services(self.repo_root)
        self.ports = {**resolve_ports(self.services, environ={}), **(ports or {})}
        self.redis_port = redis_port
        self.redis_appendfsync = redis_appendfsync
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.verbose = verbose
        self.extra_env = dict(extra_env or {})
        self._echo = echo or (lambda _msg: None)
        self._secrets: LocalSecrets | None = None
        self._redis: RedisServer | None = None
        self._running: list[_Service] = []
        self._version: str | None = None
        self._commit: str | None = None

    @classmethod
    def isolated(cls, repo_root: Path, state_dir: Path, **kwargs: Any) -> LocalStack:
        """A stack on free ports, beside (not instead of) a running ``make run``: for tests and benchmarks."""
        services = discover_services(Path(repo_root))
        names = service_order(list(dict.fromkeys([*KNOWN_SERVICES, *services])))
        return cls(
            repo_root,
            state_dir,
            services=services,
            ports={n: free_port() for n in names},
            redis_port=free_port(),
            **kwargs,
        )

    # What the stack is -----------------------------------------------------------------

    @property
    def secrets(self) -> LocalSecrets:
        if self._secrets is None:
            # Owner-only: it holds the secrets, and Redis's data (client hashes, audit trail).
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._secrets = load_or_create(self.state_dir / "secrets.json", [*KNOWN_SERVICES, *self.services])
        return self._secrets

    @property
    def version(self) -> str:
        if self._version is None:
            # The same version a deploy gives every manifest (aerie.suite.version), from git tags.
            try:
                self._version = describe(self.repo_root).version
            except (OSError, subprocess.SubprocessError, ValueError):
                self._version = "0.0.0+local"
        return self._version

    @property
    def commit(self) -> str:
        if self._commit is None:
            self._commit = _git(self.repo_root, "rev-parse", "--short", "HEAD") or "unknown"
        return self._commit

    @property
    def redis_url(self) -> str:
        return f"redis://:{self.secrets.redis_password}@{HOST}:{self.redis_port}/0"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "stack.pid"

    def url(self, service: str) -> str:
        return f"http://{HOST}:{self.ports[service]}"

    def env(self) -> dict[str, str]:
        """What ``.aerie/local.env`` holds: where everything runs and the bootstrap credentials."""
        env = {f"AERIE_{_env_key(name)}_URL": self.url(name) for name in self.ports}
        env["AERIE_BOOTSTRAP_CLIENT_ID"] = self.secrets.bootstrap_client_id
        env["AERIE_BOOTSTRAP_CLIENT_SECRET"] = self.secrets.bootstrap_client_secret
        env["REDIS_URL"] = self.redis_url
        return env

    def service_env(self, name: str) -> dict[str, str]:
        """The variables Cloud Foundry would set for ``name``, plus the Aerie ones its manifest sets."""
        port = self.ports[name]
        tenants_url = self.url("tenants")
        s = self.secrets
        env = {
            "PORT": str(port),
            "CF_INSTANCE_INDEX": "0",
            "CF_INSTANCE_GUID": f"local-{name}-0",
            "MEMORY_LIMIT": "128M",
            "VCAP_APPLICATION": json.dumps(
                {
                    "application_name": name,
                    "name": name,
                    "instance_index": 0,
                    "application_uris": [f"{HOST}:{port}"],
                    "uris": [f"{HOST}:{port}"],
                    "limits": {"mem": 128},
                    "space_name": "local",
                    "organization_name": "aerie",
                }
            ),
            "VCAP_SERVICES": json.dumps(
                {
                    "p.redis": [
                        {
                            "name": "aerie-redis",
                            "instance_name": "aerie-redis",
                            "binding_name": None,
                            "label": "p.redis",
                            "tags": ["redis"],
                            "plan": "local",
                            "credentials": {"host": HOST, "port": self.redis_port, "password": s.redis_password},
                        }
                    ],
                }
            ),
            "AERIE_TENANTS_URL": tenants_url,
            "AERIE_ISSUER": tenants_url,
            **{f"AERIE_{_env_key(other)}_URL": self.url(other) for other in self.ports},
            "VERSION": self.version,
            "AERIE_COMMIT": self.commit,
        }
        if name == "tenants":
            env["AERIE_SIGNING_KEYS"] = s.signing_keys_json()
            env["AERIE_BOOTSTRAP_CLIENT_ID"] = s.bootstrap_client_id
            env["AERIE_BOOTSTRAP_CLIENT_SECRET"] = s.bootstrap_client_secret
            env["AERIE_SERVICE_CLIENTS"] = s.service_clients_json()
        else:
            client = s.service_clients[name]
            env["AERIE_CLIENT_ID"] = client.client_id
            env["AERIE_CLIENT_SECRET"] = client.secret
        return env

    def write_env_file(self) -> Path:
        """Write ``.aerie/local.env`` (mode 0600: it holds the bootstrap secret)."""
        path = self.state_dir / "local.env"
        write_private_file(path, "".join(f"{k}={v}\n" for k, v in self.env().items()))
        return path

    # Running it ------------------------------------------------------------------------

    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        uwsgi = self._uwsgi_binary() if self.services else ""
        self._check_state_dir_free()
        self._check_ports()
        _ = self.secrets  # creates the state directory, owner-only, before anything goes in it
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        # Lets `make clean` see that a stack still uses this state directory.
        self.pid_file.write_text(f"{os.getpid()}\n")
        self._redis = RedisServer(
            self.state_dir / "redis",
            self.redis_port,
            password=self.secrets.redis_password,
            appendonly=True,
            appendfsync=self.redis_appendfsync,
        )
        with _sigint_blocked():
            self._redis.start()
        self._echo(f"redis     {HOST}:{self.redis_port} ({self._redis.binary})")
        for name in self.services:
            self._running.append(self._spawn(name, uwsgi))
        self._wait_ready()
        self.write_env_file()

    def _uwsgi_binary(self) -> str:
        """uWSGI from the running interpreter's venv (pyuwsgi installs it there), else from PATH."""
        beside = Path(sys.executable).parent / "uwsgi"
        if beside.exists():
            return str(beside)
        import shutil

        found = shutil.which("uwsgi")
        if not found:
            raise StackError(
                "no uwsgi executable beside the Python interpreter nor on PATH: pip install 'pyuwsgi>=2.0.29'"
            )
        return found

    def _check_state_dir_free(self) -> None:
        """Two stacks on one state directory would run two Redis servers on one AOF file."""
        try:
            other = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return
        if other == os.getpid():
            return
        try:
            os.kill(other, 0)
        except ProcessLookupError:
            return  # left behind by a stack that was killed
        except PermissionError:
            pass
        raise StackError(f"another stack (pid {other}) is running on {self.state_dir}; stop it or use --state-dir")

    def _check_ports(self) -> None:
        taken = [
            f"{what} port {port}"
            for what, port in [("redis", self.redis_port), *((n, self.ports[n]) for n in self.services)]
            if not _port_is_free(port)
        ]
        if taken:
            raise StackError(
                f"{', '.join(taken)} already in use: is another stack running? "
                "Choose others with --redis-port/--port-<name>/--base-port or AERIE_<NAME>_PORT."
            )

    def _process_env(self, name: str) -> dict[str, str]:
        inherited = {
            k: v
            for k, v in os.environ.items()
            if k not in _NOT_INHERITED
            and not k.startswith(_NOT_INHERITED_PREFIXES)
            and not (k.startswith("AERIE_") and (k.endswith("_URL") or k.endswith("_PORT")))
        }
        bin_dir = str(Path(sys.executable).parent)
        inherited["PATH"] = os.pathsep.join([bin_dir, inherited.get("PATH", os.defpath)])
        inherited["PYTHONUNBUFFERED"] = "1"
        return {**inherited, **self.service_env(name), **self.extra_env}

    def _spawn(self, name: str, uwsgi: str) -> _Service:
        svc = _Service(
            name, self.ports[name], self.repo_root / "services" / name, self.state_dir / "logs" / f"{name}.log"
        )
        if svc.log_path.exists():  # keep the previous run's log for a post-mortem
            svc.log_path.replace(svc.log_path.with_name(f"{name}.log.1"))
        svc.log_file = open(svc.log_path, "ab")  # noqa: SIM115 - closed in _reap
        # A session of its own: Ctrl-C (SIGINT) makes uWSGI drop everything at once, so only
        # the stack gets it and sends the graceful SIGTERM itself.
        svc.process = subprocess.Popen(
            [uwsgi, "--ini", "uwsgi.ini"],
            cwd=svc.directory,
            env=self._process_env(name),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if self.verbose else svc.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if self.verbose:
            svc.pump = threading.Thread(target=self._pump, args=(svc,), name=f"log-{name}", daemon=True)
            svc.pump.start()
        self._echo(f"{name:<9} {svc.url} (pid {svc.process.pid}, log {svc.log_path})")
        return svc

    @staticmethod
    def _pump(svc: _Service) -> None:
        """Copy a service's output to its log and, prefixed with its name, to the console."""
        assert svc.process is not None and svc.process.stdout is not None and svc.log_file is not None
        prefix = f"{svc.name:<9}| ".encode()
        for line in iter(svc.process.stdout.readline, b""):
            svc.log_file.write(line)
            svc.log_file.flush()
            with contextlib.suppress(ValueError, OSError):
                sys.stdout.buffer.write(prefix + line)
                sys.stdout.flush()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        pending = list(self._running)
        while pending:
            for svc in list(pending):
                assert svc.process is not None
                if svc.process.poll() is not None:
                    raise StackError(
                        f"{svc.name} exited with status {svc.process.returncode} while starting.\n"
                        f"{self.log_tail(svc.name)}"
                    )
                if _answers_ready(svc.url):
                    pending.remove(svc)
            if pending and time.monotonic() > deadline:
                svc = pending[0]
                raise StackError(
                    f"{svc.name} did not answer GET /ready with 200 within {self.ready_timeout:.0f}s.\n"
                    f"{self.log_tail(svc.name)}"
                )
            if pending:
                time.sleep(0.2)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.state_dir / "logs" / f"{name}.log"
        if not path.exists():
            return f"(no log at {path})"
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {path} ---\n" + "\n".join(tail)

    def dead(self) -> list[str]:
        """What has exited although nobody stopped it, as 'name (status N)'."""
        out = [
            f"{svc.name} (status {svc.process.returncode})"
            for svc in self._running
            if svc.process is not None and not svc.stopping and svc.process.poll() is not None
        ]
        if self._redis is not None and self._redis.process is not None and self._redis.process.poll() is not None:
            out.append(f"redis (status {self._redis.process.returncode})")
        return out

    def stop(self) -> None:
        """SIGTERM every service (uWSGI finishes in-flight requests), SIGKILL after the grace time, then Redis."""
        for svc in self._running:
            svc.stopping = True
            if svc.process is not None and svc.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    svc.process.terminate()
        deadline = time.monotonic() + self.stop_timeout
        for svc in self._running:
            self._reap(svc, deadline)
        self._running = []
        if self._redis is not None:
            self._redis.stop(self.stop_timeout)
            self._redis = None
        with contextlib.suppress(FileNotFoundError):
            if self.pid_file.read_text().strip() == str(os.getpid()):
                self.pid_file.unlink()

    def _reap(self, svc: _Service, deadline: float) -> None:
        if svc.process is not None:
            try:
                svc.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._echo(f"{svc.name} did not stop within {self.stop_timeout:.0f}s; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(svc.process.pid, signal.SIGKILL)  # the master and its workers
                svc.process.wait()
            else:
                self._echo(f"{svc.name} stopped (status {svc.process.returncode})")
                if svc.process.returncode < 0:  # the master was killed: leave no orphaned worker
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(svc.process.pid, signal.SIGKILL)
        if svc.pump is not None:
            svc.pump.join(timeout=2)
        if svc.process is not None and svc.process.stdout is not None:
            svc.process.stdout.close()
        if svc.log_file is not None:
            svc.log_file.close()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _answers_ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(base_url + "/ready", timeout=2) as resp:  # noqa: S310 - our own http URL
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


# Command line -------------------------------------------------------------------------


class _Terminated(Exception):
    """SIGTERM, turned into an exception so the same ``finally`` stops everything."""


def _parse_args(argv: Sequence[str] | None, repo_root: Path) -> argparse.Namespace:
    names = service_order(list(dict.fromkeys([*KNOWN_SERVICES, *discover_services(repo_root)])))
    p = argparse.ArgumentParser(
        prog="python -m aerie.local.stack", description="Run Redis and every Aerie service locally."
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=repo_root / ".aerie",
        help="secrets, Redis data, logs (default: <repo>/.aerie)",
    )
    p.add_argument("--redis-port", type=int, default=None, help=f"default $AERIE_REDIS_PORT or {DEFAULT_REDIS_PORT}")
    p.add_argument("--base-port", type=int, default=None, help="tenants on this port, the others on the next ones")
    for name in names:
        p.add_argument(
            f"--port-{name}",
            type=int,
            default=None,
            dest=f"port_{_env_key(name).lower()}",
            help=f"default $AERIE_{_env_key(name)}_PORT or {resolve_ports(names, environ={})[name]}",
        )
    p.add_argument(
        "--appendfsync", choices=["always", "everysec", "no"], default="everysec", help="Redis AOF fsync policy"
    )
    p.add_argument("--ready-timeout", type=float, default=60.0, help="seconds every service has to become ready")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="also show every service's output, prefixed with its name"
    )
    args = p.parse_args(argv)
    args.names = names
    return args


def _banner(stack: LocalStack, elapsed: float) -> str:
    s = stack.secrets
    tenants = stack.url("tenants")
    lines = [
        "",
        f"Aerie {stack.version} ({stack.commit}) is up in {elapsed:.1f}s.",
        "",
        *(f"  {name:<9} {stack.url(name)}/docs" for name in stack.services),
        f"  {'redis':<9} redis://:***@{HOST}:{stack.redis_port}/0 (data in {stack.state_dir / 'redis'})",
        "",
        f"Bootstrap client (platform:admin): {s.bootstrap_client_id} / {s.bootstrap_client_secret}",
        f"Everything above, for scripts and tests: {stack.state_dir / 'local.env'}",
        "",
        "Get a token:",
        f"  curl -s -u '{s.bootstrap_client_id}:{s.bootstrap_client_secret}' "
        f"-d grant_type=client_credentials {tenants}/v1/oauth/token",
        "",
        f"Logs in {stack.state_dir / 'logs'}. Ctrl-C stops everything.",
    ]
    if "tenants" not in stack.services:
        lines.insert(-2, "  (tenants is not running: services/tenants has no uwsgi.ini yet)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        repo_root = find_repo_root()
    except RepoNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args = _parse_args(argv, repo_root)
    try:
        ports = resolve_ports(
            args.names,
            overrides={n: getattr(args, f"port_{_env_key(n).lower()}") for n in args.names},
            base_port=args.base_port,
        )
        redis_port = args.redis_port or _port_from_env(os.environ, "AERIE_REDIS_PORT") or DEFAULT_REDIS_PORT
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    stack = LocalStack(
        repo_root,
        args.state_dir,
        ports=ports,
        redis_port=redis_port,
        redis_appendfsync=args.appendfsync,
        ready_timeout=args.ready_timeout,
        verbose=args.verbose,
        echo=lambda msg: print(msg, flush=True),
    )
    if not stack.services:
        print("note: no services/<name>/uwsgi.ini found yet; running Redis alone", flush=True)

    def on_term(_signum: int, _frame: object) -> None:
        raise _Terminated

    signal.signal(signal.SIGTERM, on_term)
    started = time.monotonic()
    status = 0
    try:
        stack.start()
        print(_banner(stack, time.monotonic() - started), flush=True)
        while True:
            time.sleep(0.5)
            dead = stack.dead()
            if dead:
                print(f"\n{', '.join(dead)} exited unexpectedly; stopping everything.", file=sys.stderr, flush=True)
                for name in stack.services:
                    if any(d.startswith(f"{name} ") for d in dead):
                        print(stack.log_tail(name), file=sys.stderr, flush=True)
                status = 1
                break
    except (KeyboardInterrupt, _Terminated):
        print("\nstopping...", flush=True)
    except StackError as exc:
        print(f"\nerror: {exc}", file=sys.stderr, flush=True)
        status = 1
    finally:
        # A second Ctrl-C must not leave processes behind half-way through stopping them.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
    print("stopped.", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
