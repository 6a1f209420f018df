"""Throwaway PostgreSQL and Redis servers a test can stop, start and restart (fault injection).

    pg = ControlledPostgres(max_connections=8).init()   # initdb + start
    pg.stop(); pg.start(); pg.url
    rd = ControlledRedis(persistent=True).start()        # AOF, fsync always: data survives a restart
    rd.stop(); rd.start(); rd.url

Both keep their port across restarts (clients reconnect to the same address) and
``close()`` stops the server and deletes its directory (also at interpreter exit).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile

from polling import wait_until
from services import _find_binary, _free_port, is_listening


class ControlledPostgres:
    """A PostgreSQL cluster in a temporary directory (run as ``postgres`` via runuser when root)."""

    def __init__(self, max_connections: int = 20) -> None:
        self.initdb, self.pg_ctl = _find_binary("initdb"), _find_binary("pg_ctl")
        if not (self.initdb and self.pg_ctl):
            raise RuntimeError("initdb/pg_ctl not found: install PostgreSQL")
        self.max_connections = max_connections
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="parel-faults-pg-")
        self.data = os.path.join(self.dir, "data")
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        atexit.register(self.close)

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self.prefix, *args], check=check, capture_output=True, text=True, timeout=60)

    def init(self) -> ControlledPostgres:
        self._ctl(self.initdb, "-D", self.data, "-A", "trust", "-U", "postgres")
        return self.start()

    def start(self) -> ControlledPostgres:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
            f" -c max_connections={self.max_connections} -c superuser_reserved_connections=0"
        )
        self._ctl(self.pg_ctl, "-D", self.data, "-o", options, "-l", f"{self.dir}/log", "-w", "-t", "30", "start")
        wait_until(lambda: is_listening("127.0.0.1", self.port, 0.2), "PostgreSQL to listen")
        return self

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: like a crash (backends killed, no checkpoint); ``fast``: a clean shutdown."""
        self._ctl(self.pg_ctl, "-D", self.data, "-m", mode, "-w", "stop", check=False)
        wait_until(lambda: not is_listening("127.0.0.1", self.port, 0.2), "PostgreSQL to stop listening")

    def restart(self) -> ControlledPostgres:
        self.stop()
        return self.start()

    def close(self) -> None:
        if os.path.isdir(self.data):
            self._ctl(self.pg_ctl, "-D", self.data, "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


class ControlledRedis:
    """A ``redis-server`` subprocess on a fixed port; ``persistent``: AOF with ``appendfsync always``."""

    def __init__(self, persistent: bool = False) -> None:
        self.server = shutil.which("redis-server")
        if not self.server:
            raise RuntimeError("redis-server not found: install Redis")
        self.persistent = persistent
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="parel-faults-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        atexit.register(self.close)

    def start(self) -> ControlledRedis:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        command = [self.server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", self.dir]
        self.process = subprocess.Popen(
            [*command, *persistence],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: is_listening("127.0.0.1", self.port, 0.2), "Redis to listen")
        return self

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """SIGKILL by default (a crash: only what the AOF already holds survives)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(15)
        self.process = None
        wait_until(lambda: not is_listening("127.0.0.1", self.port, 0.2), "Redis to stop listening")

    def restart(self) -> ControlledRedis:
        self.stop()
        return self.start()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
