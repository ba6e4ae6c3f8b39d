"""Real services for the ``deploy`` tests: a PostgreSQL server and a Ray head, both on 127.0.0.1.

Each is a context manager that starts the service on free loopback ports, yields how to reach
it and stops it on exit, also when the test failed. Missing binaries skip the tests with a
reason, except under CI, where they fail: CI installs postgresql-15 and the ``deploy`` extra.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"


def missing(reason: str) -> None:
    """Skip, or fail under CI, where every deploy test must run."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI must run the deploy tests: .ci/run installs postgresql-15 and the deploy extra)")
    pytest.skip(reason)


def require_modules(*names: str) -> None:
    import importlib.util

    absent = [name for name in names if importlib.util.find_spec(name) is None]
    if absent:
        missing(f"{', '.join(absent)} not installed (pip install -e '.[deploy]')")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def listening_addresses(pids: list[int]) -> set[tuple[str, int, int]]:
    """(ip, port, pid) of every listening TCP socket and bound UDP socket of these processes."""
    import psutil

    found = set()
    for pid in pids:
        try:
            connections = psutil.Process(pid).net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        for c in connections:
            # TCP: only listening sockets accept connections; UDP has no listen state, a bound one receives.
            if c.status == psutil.CONN_LISTEN or (c.type == socket.SOCK_DGRAM and c.laddr):
                found.add((c.laddr.ip, c.laddr.port, pid))
    return found


def non_loopback(addresses: set[tuple[str, int, int]]) -> set[tuple[str, int, int]]:
    """The (ip, port, pid) entries not on a loopback address (IPv4-mapped IPv6 counts as its IPv4)."""

    def loopback(ip: str) -> bool:
        address = ipaddress.ip_address(ip.split("%")[0])
        return (getattr(address, "ipv4_mapped", None) or address).is_loopback

    return {entry for entry in addresses if not loopback(entry[0])}


def process_tree(pid: int) -> list[int]:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root.pid, *(child.pid for child in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def running(pids: list[int]) -> list[int]:
    """Those of ``pids`` still running (a zombie waiting for its parent to reap it has stopped)."""
    import psutil

    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def stop_tree(pids: list[int], grace: float = 20.0) -> list[int]:
    """SIGTERM these processes, then SIGKILL whatever is still alive after ``grace`` seconds."""
    import psutil

    processes = []
    for pid in pids:
        try:
            processes.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    for process in processes:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=grace)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    return [p.pid for p in alive]


# --- PostgreSQL ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str
    database: str
    data_dir: Path

    @property
    def env(self) -> dict[str, str]:
        """The variables deploy/dagster.yaml reads its credentials from."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.database,
        }

    def server_pids(self) -> list[int]:
        """The postmaster (first line of postmaster.pid) and its backends."""
        pid_file = self.data_dir / "postmaster.pid"
        return process_tree(int(pid_file.read_text().split()[0])) if pid_file.exists() else []

    def create_database(self, name: str) -> "Postgres":
        """A new, empty database on this server (one per test keeps their runs apart)."""
        admin = self.connect("postgres")
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        admin.close()
        return replace(self, database=name)

    def connect(self, database: str | None = None):
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password, dbname=database or self.database)


def _as_server_user(command: list[str], user: str | None, **kwargs) -> subprocess.CompletedProcess:
    """PostgreSQL refuses to run as root: when we are root, run as the unprivileged ``user``."""
    if user is not None:
        command = ["runuser", "-u", user, "--", *command]
    return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)


@contextmanager
def postgres_server(database: str = "dagster"):
    """initdb + pg_ctl as a non-root user, on 127.0.0.1 and a free port; removed on exit."""
    require_modules("psycopg2", "dagster_postgres", "psutil")
    bin_dir = Path(os.environ.get("DATASELECT_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
    for tool in ("initdb", "pg_ctl"):
        if not (bin_dir / tool).exists():
            missing(f"PostgreSQL server binaries not found in {bin_dir} (apt-get install postgresql-15, or set DATASELECT_POSTGRES_BIN)")
    server_user = None
    if os.geteuid() == 0:
        server_user = os.environ.get("DATASELECT_POSTGRES_USER", "postgres")
        try:
            pwd.getpwnam(server_user)
        except KeyError:
            missing(f"running as root and there is no unprivileged user {server_user!r} to run PostgreSQL as")
    # Not under pytest's tmp_path: its parents are private to root, and the server user must own the folder.
    base = Path(tempfile.mkdtemp(prefix="dataselect-pg-"))
    data_dir = base / "data"
    if server_user is not None:
        account = pwd.getpwnam(server_user)
        os.chown(base, account.pw_uid, account.pw_gid)
    password = secrets.token_urlsafe(18)
    user = "dataselect"
    started = False
    try:
        password_file = base / "password"
        password_file.write_text(password + "\n")
        if server_user is not None:
            os.chown(password_file, account.pw_uid, account.pw_gid)
        password_file.chmod(0o600)
        _as_server_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                user,
                f"--pwfile={password_file}",
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "-E",
                "UTF8",
                "--no-instructions",
            ],
            server_user,
        )
        password_file.unlink()
        port = free_port()
        # listen_addresses pins TCP to loopback; the Unix socket lives in the private data folder.
        options = f"-c listen_addresses={LOOPBACK} -p {port} -c unix_socket_directories={data_dir} -c fsync=off"
        _as_server_user(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data_dir),
                "-o",
                options,
                "-l",
                str(base / "server.log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
            server_user,
        )
        started = True
        yield Postgres(LOOPBACK, port, user, password, "postgres", data_dir).create_database(database)
    finally:
        if started:
            _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"], server_user)
        shutil.rmtree(base, ignore_errors=True)


# --- Ray ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RayHead:
    gcs_address: str  # host:port, for ray.init / workers
    dashboard_url: str  # http://host:port, what Ray job submission (and so dagster-ray's executor) talks to
    process: subprocess.Popen

    def pids(self) -> list[int]:
        """``ray start --block`` and everything it started: GCS, raylet, dashboard, agents, workers."""
        return process_tree(self.process.pid)


@contextmanager
def ray_head(extra_env: dict[str, str] | None = None, num_cpus: int = 2, object_store_bytes: int = 100 * 1024**2):
    """A single-node Ray head on 127.0.0.1 with every port explicit; its process tree is ended on exit.

    Its workers inherit ``extra_env``, as a real cluster's workers get their settings (such as the
    instance's database credentials) from their own environment.
    """
    require_modules("ray", "dagster_ray", "psutil")
    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.exists():
        missing(f"ray is not installed next to {sys.executable} (pip install -e '.[deploy]')")
    # Unix socket paths are limited to about 100 bytes, so a short temp dir of our own.
    temp_dir = Path(tempfile.mkdtemp(prefix="dsray-"))
    ports = {
        name: free_port()
        for name in (
            "port",
            "dashboard-port",
            "ray-client-server-port",
            "node-manager-port",
            "object-manager-port",
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "runtime-env-agent-port",
            "metrics-export-port",
        )
    }
    first_worker = free_port()
    env = {
        **os.environ,
        # Keep Ray on loopback, and make no network calls of its own.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
        **(extra_env or {}),
    }
    command = [
        str(ray_cli),
        "start",
        "--head",
        "--block",
        "--node-ip-address",
        LOOPBACK,
        "--include-dashboard",
        "true",
        "--dashboard-host",
        LOOPBACK,
        "--num-cpus",
        str(num_cpus),
        "--num-gpus",
        "0",
        "--object-store-memory",
        str(object_store_bytes),
        "--temp-dir",
        str(temp_dir),
        "--disable-usage-stats",
        "--min-worker-port",
        str(first_worker),
        "--max-worker-port",
        str(first_worker + 50),
        *(arg for name, port in ports.items() for arg in (f"--{name}", str(port))),
    ]
    with open(temp_dir / "ray-start.log", "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    head = RayHead(f"{LOOPBACK}:{ports['port']}", f"http://{LOOPBACK}:{ports['dashboard-port']}", process)
    try:
        _wait_for_job_api(head, temp_dir / "ray-start.log")
        yield head
    finally:
        stop_tree(head.pids())
        # Any process of this head that left the tree still names the head's own temp dir in its arguments.
        stop_tree(_processes_naming(str(temp_dir)))
        shutil.rmtree(temp_dir, ignore_errors=True)


def _processes_naming(text: str) -> list[int]:
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(text in argument for argument in process.info["cmdline"] or []):
            found.append(process.pid)
    return found


def _wait_for_job_api(head: RayHead, log: Path, timeout: float = 180.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if head.process.poll() is not None:
            raise RuntimeError(f"ray start exited with {head.process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{head.dashboard_url}/api/version", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    raise RuntimeError(f"Ray's job API did not answer within {timeout:.0f}s:\n{log.read_text()[-4000:]}")
