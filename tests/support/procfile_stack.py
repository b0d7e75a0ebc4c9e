"""The service as the Procfile runs it, with a PostgreSQL cluster and a Redis server of its own.

    with ServiceStack.build(root) as stack:        # initdb, redis-server, release, every process
        stack.postgres.restart()
        stack.redis.restart()
        stack.processes.kill("worker"); stack.processes.start("worker")

Every process is a real subprocess started from its Procfile line (`bash -c "exec <line>"`)
with the environment a Heroku-style host gives a dyno: `DATABASE_URL` as `postgres://...`,
`REDIS_URL`, `PORT`, the secrets, `APP_ENV=production`. PostgreSQL and Redis are private
to the stack (free ports, data in `root`), so restarting them disturbs nobody else.
"""

import glob
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROCESS_NAMES = ("sim", "web", "worker", "clock")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin_dir():
    """The newest installed PostgreSQL's binaries (Debian layout), or None."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return str(Path(candidates[-1]).parent) if candidates else None


def wait_until(check, seconds, what):
    deadline = time.monotonic() + seconds
    last_error = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - anything means "not yet"
            last_error = exc
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {seconds} s (last error: {last_error!r})")


class PostgresCluster:
    """A throw-away cluster run by the `postgres` user (initdb and pg_ctl refuse root)."""

    def __init__(self, root, port=None):
        self.bin = postgres_bin_dir()
        self.data = Path(root) / "pgdata"
        self.port = port or free_port()
        self.log = Path(root) / "postgres.log"

    def _as_postgres(self, *command):
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *command], check=True, capture_output=True, text=True, timeout=120)

    def init(self):
        self.data.mkdir(parents=True)
        self.log.touch()
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
            shutil.chown(self.log, "postgres", "postgres")
        self._as_postgres(f"{self.bin}/initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        return self

    def start(self):
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        self._as_postgres(f"{self.bin}/pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")
        return self

    def stop(self):
        self._as_postgres(f"{self.bin}/pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self, down_seconds=1.0):
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def is_running(self):
        return (self.data / "postmaster.pid").exists()

    def url(self, database, scheme="postgres"):
        return f"{scheme}://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name):
        import psycopg

        with psycopg.connect(self.url("postgres", "postgresql"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')


class RedisServer:
    """redis-server without persistence: a restart loses every queue, as a crashed cache would."""

    def __init__(self, root, port=None):
        self.port = port or free_port()
        self.root = Path(root)
        self.process = None
        self.log = self.root / "redis.log"

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        import redis

        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        wait_until(client.ping, 20, "redis-server")
        client.close()
        return self

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)
        self.process = None

    def restart(self, down_seconds=1.0):
        self.stop()
        time.sleep(down_seconds)
        self.start()


def procfile_commands(path=PROJECT_ROOT / "Procfile"):
    commands = {}
    for line in Path(path).read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not line.lstrip().startswith("#"):
            commands[name.strip()] = command.strip()
    return commands


class ProcfileProcesses:
    """Each Procfile process as a subprocess of its own (own session, so its children die with it)."""

    def __init__(self, root, env):
        self.root = Path(root)
        self.env = env
        self.commands = procfile_commands()
        self.running = {}
        self.starts = {}

    def run_once(self, command, timeout=180):
        """A one-off process (`heroku run`): the release step, `flask seed-demo`."""
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=PROJECT_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{command!r} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
        return result.stdout

    def log_path(self, name):
        return self.root / f"{name}.log"

    def start(self, name):
        if name in self.running and self.running[name].poll() is None:
            raise RuntimeError(f"{name} is already running")
        self.starts[name] = self.starts.get(name, 0) + 1
        with open(self.log_path(name), "ab") as log:
            log.write(f"\n==== start #{self.starts[name]} of {name} ====\n".encode())
            log.flush()
            self.running[name] = subprocess.Popen(
                ["bash", "-c", "exec " + self.commands[name]],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self.running[name]

    def kill(self, name, sig=signal.SIGKILL):
        """Signal the process and everything it forked (a crashed dyno loses them all)."""
        process = self.running[name]
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        process.wait(30)

    def alive(self, name):
        process = self.running.get(name)
        return process is not None and process.poll() is None

    def stop_all(self):
        for process in self.running.values():
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for process in self.running.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait(10)

    def log_tail(self, name, lines=60):
        try:
            return "\n".join(self.log_path(name).read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


class ServiceStack:
    """PostgreSQL + Redis + the Procfile's processes, all private to one test run."""

    def __init__(self, root, extra_env=None):
        self.root = Path(root)
        self.postgres = PostgresCluster(self.root)
        self.redis = RedisServer(self.root)
        self.web_port, self.sim_port = free_port(), free_port()
        self.env = self._environment(extra_env or {})
        self.processes = ProcfileProcesses(self.root, self.env)

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def sim_url(self):
        return f"http://127.0.0.1:{self.sim_port}"

    def _environment(self, extra):
        venv_bin = str(Path(sys.executable).parent)
        env = {
            "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            # What a Heroku-style host hands every dyno.
            "APP_ENV": "production",
            "DATABASE_URL": self.postgres.url("crm"),
            "REDIS_URL": self.redis.url,
            "PORT": str(self.web_port),
            "WEB_CONCURRENCY": "2",
            "SECRET_KEY": secrets.token_hex(32),
            "JWT_SECRET_KEY": secrets.token_hex(32),
            "MT_SIM_PORT": str(self.sim_port),
            "MT_SIMULATOR_URL": f"http://127.0.0.1:{self.sim_port}",
            "MT_SIM_DATABASE_URL": f"sqlite:///{self.root}/mt_sim.db",
            "UPLOAD_FOLDER": str(self.root / "uploads"),
        }
        env.update({key: str(value) for key, value in extra.items()})
        return env

    def start(self):
        self.postgres.init().start()
        self.postgres.create_database("crm")
        self.redis.start()
        self.processes.run_once(self.processes.commands["release"])
        # Production: the demo users get generated passwords, printed once.
        self.demo_passwords = dict(
            re.findall(
                r"^\s+\w+:\s+(\S+@\S+) / (\S+)", self.processes.run_once("flask seed-demo --allow-production"), re.M
            )
        )
        self.processes.start("sim")
        self.wait_for_http(f"{self.sim_url}/sim/health", "sim")
        for name in ("web", "worker", "clock"):
            self.processes.start(name)
        self.wait_for_http(f"{self.base_url}/readyz", "web")
        return self

    def wait_for_http(self, url, name, seconds=60):
        def answers():
            if not self.processes.alive(name):
                raise RuntimeError(f"{name} exited:\n{self.processes.log_tail(name)}")
            return requests.get(url, timeout=3).status_code == 200

        wait_until(answers, seconds, url)

    def close(self):
        self.processes.stop_all()
        self.redis.stop()
        if self.postgres.is_running():
            try:
                self.postgres.stop()
            except subprocess.CalledProcessError:
                pass

    def diagnostics(self, lines=40):
        """The last lines of every process's log, for a failure message."""
        return "\n".join(f"--- {name} ---\n{self.processes.log_tail(name, lines)}" for name in PROCESS_NAMES)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
