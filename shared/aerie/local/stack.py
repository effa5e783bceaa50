"""The local stack behind ``make run``: Redis and every service under uWSGI, as on Cloud Foundry.

Each service gets the environment Cloud Foundry would give it (:mod:`aerie.local.environment`)
and is started with the same ``uwsgi --ini uwsgi.ini`` as its manifest
(:mod:`aerie.local.supervisor`), so what works here works after ``cf push``.
Secrets are made once and kept under ``.aerie/`` (see :mod:`aerie.local.secrets`);
``.aerie/local.env`` tells the end-to-end suite, benchmarks and scripts where it all runs.

Use it from a shell (``python -m aerie.local.stack``, :mod:`aerie.local.cli`) or from code::

    with LocalStack.isolated(repo_root, tmp_path) as stack:
        requests.get(stack.env()["AERIE_TENANTS_URL"] + "/ready")
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aerie.local import supervisor
from aerie.local.dev_idp import AUDIENCE, DEFAULT_IDP_PORT, SAMPLE_ADMIN, DevIdentityProvider, trusted_providers_with
from aerie.local.discovery import (
    DEFAULT_PORTS,
    DEFAULT_REDIS_PORT,
    HOST,
    discover_services,
    port_is_free,
    resolve_ports,
)
from aerie.local.environment import cloud_foundry_env, inherited_env, local_env, write_env_file
from aerie.local.errors import StackError
from aerie.local.redis_cluster import RedisCluster, free_cluster_ports
from aerie.local.redis_server import RedisServer, free_port
from aerie.local.secrets import LocalSecrets, load_or_create
from aerie.local.supervisor import ServiceProcess
from aerie.suite.layout import KNOWN_SERVICES, find_repo_root, service_order
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
    "service_order",
]


def _git(repo_root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=repo_root, capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


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
        idp_port: int = DEFAULT_IDP_PORT,
        redis_appendfsync: str = "everysec",
        redis_cluster: bool = False,
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
        self.idp_port = idp_port
        self.redis_appendfsync = redis_appendfsync
        #: A Redis Cluster of three masters and three replicas instead of one Redis, on
        #: ``redis_port`` and the five ports after it (:mod:`aerie.local.redis_cluster`).
        self.redis_cluster = redis_cluster
        self.cluster_ports = self._cluster_ports(redis_port) if redis_cluster else []
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.verbose = verbose
        self.extra_env = dict(extra_env or {})
        self._echo = echo or (lambda _msg: None)
        self._secrets: LocalSecrets | None = None
        self._redis: RedisServer | None = None
        self._cluster: RedisCluster | None = None
        #: Set by a test that kills a master on purpose: ``dead()`` then leaves nodes out.
        self.cluster_failover_expected = False
        self._idp: DevIdentityProvider | None = None
        self._running: list[ServiceProcess] = []
        self._version: str | None = None
        self._commit: str | None = None

    @staticmethod
    def _cluster_ports(first: int) -> list[int]:
        # A node's bus port is 10000 above it and must exist: a high port gets a free low one.
        if first + 5 + 10000 > 65535:
            first = free_cluster_ports(6)
        return [first + i for i in range(6)]

    @property
    def cluster(self) -> RedisCluster | None:
        """The running cluster, for tests that fail a master over."""
        return self._cluster

    @classmethod
    def isolated(cls, repo_root: Path, state_dir: Path, **kwargs: Any) -> LocalStack:
        """A stack on free ports, beside (not instead of) a running ``make run``: for tests and benchmarks."""
        services = discover_services(Path(repo_root))
        names = service_order(list(dict.fromkeys([*KNOWN_SERVICES, *services])))
        ports = {n: free_port() for n in names}
        idp_port = free_port()
        taken = {*ports.values(), idp_port}
        return cls(
            repo_root,
            state_dir,
            services=services,
            ports=ports,
            redis_port=free_cluster_ports(6, avoid=taken) if kwargs.get("redis_cluster") else free_port(),
            idp_port=idp_port,
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

    @property
    def idp_url(self) -> str:
        """The development OpenID Connect provider's issuer (:mod:`aerie.local.dev_idp`)."""
        return f"http://{HOST}:{self.idp_port}"

    def env(self) -> dict[str, str]:
        """What ``.aerie/local.env`` holds: where everything runs and the bootstrap credentials."""
        env = local_env({name: self.url(name) for name in self.ports}, self.secrets, self.redis_url)
        if self.redis_cluster:
            env["AERIE_REDIS_CLUSTER"] = "true"
        env["AERIE_DEV_IDP_URL"] = self.idp_url
        return env

    def service_env(self, name: str) -> dict[str, str]:
        """The variables Cloud Foundry would set for ``name``, plus the Aerie ones its manifest sets.

        The tenants service also trusts the development provider (beside any provider the
        caller's ``AERIE_IDENTITY_PROVIDERS`` lists) and makes its sample person a platform-admin;
        the console signs people in at that provider, as the client whose audience tenants trusts.
        """
        env = cloud_foundry_env(
            name,
            port=self.ports[name],
            urls={other: self.url(other) for other in self.ports},
            redis_port=self.redis_port,
            redis_cluster_ports=self.cluster_ports,
            secrets=self.secrets,
            version=self.version,
            commit=self.commit,
        )
        if name == "tenants":
            env["AERIE_IDENTITY_PROVIDERS"] = trusted_providers_with(self.idp_url, os.environ)
            env.setdefault("AERIE_BOOTSTRAP_ADMIN_EMAIL", SAMPLE_ADMIN)
        if name == "console":
            env["AERIE_CONSOLE_URL"] = self.url(name)
            env["AERIE_CONSOLE_OIDC_ISSUER"] = self.idp_url
            env["AERIE_CONSOLE_OIDC_CLIENT_ID"] = AUDIENCE
            # The dev provider takes any secret, but wants one (a confidential client).
            env["AERIE_CONSOLE_OIDC_CLIENT_SECRET"] = AUDIENCE
        return env

    def write_env_file(self) -> Path:
        """Write ``.aerie/local.env`` (mode 0600: it holds the bootstrap secret)."""
        return write_env_file(self.state_dir / "local.env", self.env())

    # Running it ------------------------------------------------------------------------

    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        uwsgi = supervisor.uwsgi_binary() if self.services else ""
        self._check_state_dir_free()
        self._check_ports()
        _ = self.secrets  # creates the state directory, owner-only, before anything goes in it
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        # Lets `make clean` see that a stack still uses this state directory.
        self.pid_file.write_text(f"{os.getpid()}\n")
        if self.redis_cluster:
            self._cluster = RedisCluster(
                self.state_dir / "redis-cluster",
                password=self.secrets.redis_password,
                ports=self.cluster_ports,
                appendfsync=self.redis_appendfsync,
            )
            with supervisor.sigint_blocked():
                self._cluster.start()
            ports = ",".join(str(p) for p in self.cluster_ports)
            binary = self._cluster.nodes[0].binary
            self._echo(f"redis     cluster of 3 masters + 3 replicas on {HOST}:{ports} ({binary})")
        else:
            self._redis = RedisServer(
                self.state_dir / "redis",
                self.redis_port,
                password=self.secrets.redis_password,
                appendonly=True,
                appendfsync=self.redis_appendfsync,
            )
            with supervisor.sigint_blocked():
                self._redis.start()
            self._echo(f"redis     {HOST}:{self.redis_port} ({self._redis.binary})")
        self._idp = DevIdentityProvider(self.idp_port, self.state_dir / "logs" / "dev-idp.log")
        with supervisor.sigint_blocked():
            self._idp.start()
        self._echo(f"dev-idp   {self.idp_url} (oidc-provider-mock: sign in as anyone)")
        for name in self.services:
            svc = ServiceProcess(
                name, self.ports[name], self.repo_root / "services" / name, self.state_dir / "logs" / f"{name}.log"
            )
            env = {**inherited_env(), **self.service_env(name), **self.extra_env}
            self._running.append(supervisor.spawn(svc, uwsgi, env, verbose=self.verbose, echo=self._echo))
        supervisor.wait_ready(self._running, self.ready_timeout, self.log_tail)
        self.write_env_file()

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
            for what, port in [
                *(("redis", p) for p in (self.cluster_ports or [self.redis_port])),
                *(("redis cluster bus", p + 10000) for p in self.cluster_ports),
                ("dev-idp", self.idp_port),
                *((n, self.ports[n]) for n in self.services),
            ]
            if not port_is_free(port)
        ]
        if taken:
            raise StackError(
                f"{', '.join(taken)} already in use: is another stack running? "
                "Choose others with --redis-port/--idp-port/--port-<name>/--base-port or AERIE_<NAME>_PORT."
            )

    def pids(self) -> dict[str, int]:
        """Each running service's uWSGI master, for tests that measure its process tree."""
        return {svc.name: svc.process.pid for svc in self._running if svc.process is not None}

    def log_tail(self, name: str, lines: int = 40) -> str:
        return supervisor.log_tail(self.state_dir / "logs" / f"{name}.log", lines)

    def dead(self) -> list[str]:
        """What has exited although nobody stopped it, as 'name (status N)'."""
        out = [
            f"{svc.name} (status {svc.process.returncode})"
            for svc in self._running
            if svc.process is not None and not svc.stopping and svc.process.poll() is not None
        ]
        if self._redis is not None and self._redis.process is not None and self._redis.process.poll() is not None:
            out.append(f"redis (status {self._redis.process.returncode})")
        if self._cluster is not None and not self.cluster_failover_expected:
            for node in self._cluster.nodes:
                if node.process is not None and node.process.poll() is not None:
                    out.append(f"redis {node.port} (status {node.process.returncode})")
        if self._idp is not None and self._idp.process is not None and self._idp.process.poll() is not None:
            out.append(f"dev-idp (status {self._idp.process.returncode})")
        return out

    def stop(self) -> None:
        """SIGTERM every service (uWSGI finishes in-flight requests), SIGKILL after the grace time, then Redis."""
        for svc in self._running:
            supervisor.terminate(svc)
        deadline = time.monotonic() + self.stop_timeout
        for svc in self._running:
            supervisor.reap(svc, deadline, self.stop_timeout, self._echo)
        self._running = []
        if self._idp is not None:
            self._idp.stop(self.stop_timeout)
            self._idp = None
        if self._redis is not None:
            self._redis.stop(self.stop_timeout)
            self._redis = None
        if self._cluster is not None:
            self._cluster.stop()
            self._cluster = None
        with contextlib.suppress(FileNotFoundError):
            if self.pid_file.read_text().strip() == str(os.getpid()):
                self.pid_file.unlink()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``make run``; the command line lives in :mod:`aerie.local.cli`, which needs this module first."""
    from aerie.local.cli import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
