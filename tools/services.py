"""Find (or start) the PostgreSQL and Redis the demo and the tests run against.

Order: ``DATABASE_URL`` / ``REDIS_URL`` when set; otherwise the server on its
default local port (127.0.0.1:5432 / 127.0.0.1:6379); otherwise a throwaway
server started from locally installed binaries in a temporary directory (and
stopped at exit); otherwise :class:`ServiceUnavailable` saying what is missing.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from urllib.parse import urlsplit

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class ServiceUnavailable(RuntimeError):
    pass


def is_listening(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _url_listening(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    return is_listening(parts.hostname or "127.0.0.1", parts.port or default_port)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, what: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if is_listening("127.0.0.1", port, 0.2):
            return
        time.sleep(0.1)
    raise ServiceUnavailable(f"throwaway {what} did not start listening on 127.0.0.1:{port}")


def _find_binary(name: str) -> str | None:
    return shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)


def _locate(what: str, variable: str, default_url: str, start: Callable[[], tuple[str, str]]) -> tuple[str, str]:
    """``(url, where)``: ``$variable``, else ``default_url`` if it answers, else ``start()``."""
    default_port = urlsplit(default_url).port or 0
    explicit = os.environ.get(variable)
    if explicit:
        if not _url_listening(explicit, default_port):
            raise ServiceUnavailable(f"{what}: {variable} is set but its host:port does not answer")
        return explicit, variable
    if _url_listening(default_url, default_port):
        return default_url, f"127.0.0.1:{default_port}"
    return start()


def postgres_url() -> tuple[str, str]:
    """A reachable PostgreSQL; starts a throwaway one if needed."""
    return _locate("PostgreSQL", "DATABASE_URL", DEFAULT_POSTGRES_URL, start_throwaway_postgres)


def start_throwaway_postgres(password: str | None = None) -> tuple[str, str]:
    """Start a PostgreSQL server in a temporary directory; it stops at exit.

    With ``password``, the ``postgres`` role needs it (scram-sha-256) instead of trust auth.
    """
    initdb, pg_ctl = _find_binary("initdb"), _find_binary("pg_ctl")
    if not (initdb and pg_ctl):
        raise ServiceUnavailable(
            "PostgreSQL: DATABASE_URL is not set, nothing listens on 127.0.0.1:5432, and no initdb/pg_ctl "
            "binaries were found to start a throwaway server (install PostgreSQL, e.g. apt-get install postgresql)"
        )
    data_dir = tempfile.mkdtemp(prefix="parel-pg-")
    port = _free_port()
    # initdb refuses to run as root: run the throwaway server as the postgres user then.
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data_dir, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    auth = ["-A", "trust"]
    if password:
        password_file = os.path.join(data_dir, "pwfile")
        with open(password_file, "w") as file:
            file.write(password + "\n")
        if prefix:
            shutil.chown(password_file, "postgres", "postgres")
        auth = ["-A", "scram-sha-256", f"--pwfile={password_file}"]
    data = os.path.join(data_dir, "data")
    subprocess.run([*prefix, initdb, "-D", data, *auth, "-U", "postgres"], check=True, capture_output=True)
    options = f"-p {port} -k {data_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*prefix, pg_ctl, "-D", data, "-o", options, "-l", f"{data_dir}/log", "-w", "start"], check=True)
    atexit.register(
        lambda: (
            subprocess.run([*prefix, pg_ctl, "-D", data, "-m", "immediate", "stop"], capture_output=True),
            shutil.rmtree(data_dir, ignore_errors=True),
        )
    )
    _wait_listening(port, "PostgreSQL")
    user = f"postgres:{password}" if password else "postgres"
    return f"postgresql://{user}@127.0.0.1:{port}/postgres", f"throwaway server in {data_dir}"


def redis_url() -> tuple[str, str]:
    """A reachable Redis; starts a throwaway one if needed."""
    return _locate("Redis", "REDIS_URL", DEFAULT_REDIS_URL, start_throwaway_redis)


def start_throwaway_redis() -> tuple[str, str]:
    """Start a Redis server in a temporary directory; it stops at exit."""
    server = shutil.which("redis-server")
    if not server:
        raise ServiceUnavailable(
            "Redis: REDIS_URL is not set, nothing listens on 127.0.0.1:6379, and no redis-server binary was "
            "found to start a throwaway one (install it, e.g. apt-get install redis-server)"
        )
    work_dir = tempfile.mkdtemp(prefix="parel-redis-")
    port = _free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", work_dir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    atexit.register(lambda: (process.terminate(), process.wait(), shutil.rmtree(work_dir, ignore_errors=True)))
    _wait_listening(port, "Redis")
    return f"redis://127.0.0.1:{port}/0", f"throwaway server in {work_dir}"


def redact(url: str) -> str:
    """``url`` without its password, for printing."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


class RedisClusterProcess:
    """A throwaway Redis Cluster on loopback ports (no replicas): :func:`start_redis_cluster`."""

    def __init__(self, ports: list[int], processes: list[subprocess.Popen], work_dir: str) -> None:
        self.ports = ports
        self.processes = processes
        self.work_dir = work_dir

    @property
    def url(self) -> str:
        """A seed node's URL (a cluster client discovers the others)."""
        return f"redis://127.0.0.1:{self.ports[0]}"

    @property
    def nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", port) for port in self.ports]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.work_dir, ignore_errors=True)


def start_redis_cluster(masters: int = 3, timeout_s: float = 30) -> RedisClusterProcess:
    """Start ``redis-server --cluster-enabled yes`` on ``masters`` free loopback ports in a temporary
    directory, join them with ``redis-cli --cluster create`` (no replicas) and wait for
    ``cluster_state:ok`` on every node. The caller stops it (:meth:`RedisClusterProcess.stop`)."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    missing = [name for name, path in (("redis-server", server), ("redis-cli", cli)) if not path]
    if missing:
        raise ServiceUnavailable(
            f"Redis Cluster: {' and '.join(missing)} not found on PATH; the Redis Cluster tests start a "
            "3-master cluster from them (install them, e.g. apt-get install redis-server redis-tools)"
        )
    assert server and cli
    work_dir = tempfile.mkdtemp(prefix="parel-redis-cluster-")
    ports: list[int] = []
    while len(ports) < masters:  # the cluster bus listens on port + 10000: it must be free too
        port = _free_port()
        if port + 10000 <= 65535 and port not in ports and not is_listening("127.0.0.1", port + 10000, 0.1):
            ports.append(port)
    processes: list[subprocess.Popen] = []
    cluster = RedisClusterProcess(ports, processes, work_dir)
    try:
        for port in ports:
            node_dir = os.path.join(work_dir, str(port))
            os.mkdir(node_dir)
            argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                    "--cluster-config-file", os.path.join(node_dir, "nodes.conf"), "--cluster-node-timeout", "5000",
                    "--save", "", "--appendonly", "no", "--dir", node_dir,
                    "--logfile", os.path.join(node_dir, "redis.log")]  # fmt: skip
            processes.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in ports:
            _wait_listening(port, "Redis Cluster node")
        created = subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{port}" for port in ports), "--cluster-replicas", "0",
             "--cluster-yes"],
            capture_output=True, text=True, timeout=timeout_s,
        )  # fmt: skip
        if created.returncode != 0:
            raise ServiceUnavailable(f"redis-cli --cluster create failed: {created.stdout[-2000:]}{created.stderr}")
        deadline = time.monotonic() + timeout_s
        pending = list(ports)
        while pending:
            info = subprocess.run(
                [cli, "-h", "127.0.0.1", "-p", str(pending[0]), "cluster", "info"],
                capture_output=True, text=True, timeout=5,
            )  # fmt: skip
            if "cluster_state:ok" in info.stdout:
                pending.pop(0)
            elif time.monotonic() > deadline:
                raise ServiceUnavailable(f"Redis Cluster on {ports}: no cluster_state:ok after {timeout_s} s")
            else:
                time.sleep(0.1)
    except BaseException:
        cluster.stop()
        raise
    return cluster
