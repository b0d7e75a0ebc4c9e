"""Requests per second of an authenticated GET: the real app next to a bare Flask app.

    python -m bench.auth_get [--admin-url URL] [--workers 2] [--worker-class sync]
                             [--duration 15] [--connections 8] [--rounds 1] [--load auto]

1. Creates a PostgreSQL database of its own (through the admin URL), runs the release
   step (`flask db upgrade`) and `flask seed-demo` against it.
2. Starts gunicorn for `wsgi:app` and for `bench.bare_app:app` with the Procfile's
   settings, each on a free port of 127.0.0.1, with the environment a Heroku-style host
   gives a web dyno (`PORT`, `WEB_CONCURRENCY`, `DATABASE_URL` as `postgres://...`, the
   config vars the README asks for).
3. Signs in as the demo admin, checks that both apps answer the same bytes to
   `GET /api/v1/menus` with that token, warms each up, then loads each in turn for
   the same duration, with `wrk` when it is installed, else with a Python load
   generator (threads, one keep-alive http.client connection each).
4. Prints requests/s of both, the ratio real/bare, p50/p99 latency and the settings.
5. Stops both servers and drops the database, whatever happened.
"""

import argparse
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import closing, contextmanager
from datetime import date
from pathlib import Path

import psycopg
from psycopg import sql

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
PATH = "/api/v1/menus"
TARGET_RATIO = 0.6


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_DATABASE_ADMIN_URL", DEFAULT_ADMIN_URL))
    parser.add_argument("--workers", type=int, default=2, help="gunicorn --workers (WEB_CONCURRENCY)")
    parser.add_argument("--worker-class", default="sync", help="gunicorn --worker-class")
    parser.add_argument("--threads", type=int, default=1, help="gunicorn --threads (gthread workers)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of load per app and round")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    parser.add_argument("--connections", type=int, default=8, help="concurrent client connections")
    parser.add_argument("--load-threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=1, help="alternate real/bare this many times")
    parser.add_argument("--load", choices=("auto", "wrk", "python"), default="auto", help="load generator")
    parser.add_argument("--no-access-log", action="store_true", help="drop the Procfile's --access-logfile -")
    parser.add_argument("--keep-database", action="store_true", help="do not drop the database at the end")
    return parser.parse_args(argv)


# Database -------------------------------------------------------------------


def libpq_url(url):
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


@contextmanager
def scratch_database(admin_url, keep=False):
    """A database of our own, dropped at the end; yields its URL as Heroku spells it."""
    admin_url = libpq_url(admin_url)
    name = f"crm_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with closing(psycopg.connect(admin_url, autocommit=True)) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield "postgres://" + f"{base}/{name}".split("://", 1)[1]
    finally:
        if keep:
            print(f"database kept: {name}")
        else:
            with closing(psycopg.connect(admin_url, autocommit=True)) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def server_version(database_url):
    with closing(psycopg.connect(libpq_url(database_url))) as conn:
        return conn.execute("SHOW server_version").fetchone()[0].split()[0]


# Processes ------------------------------------------------------------------


def free_port():
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dyno_env(args, database_url, port=None):
    """The environment of a web dyno: host-set variables plus the README's config vars."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "SQLALCHEMY_"))}
    env.update(
        {
            "APP_ENV": "production",
            "DATABASE_URL": database_url,
            "SECRET_KEY": args.secret_key,
            "JWT_SECRET_KEY": args.jwt_secret_key,
            "WEB_CONCURRENCY": str(args.workers),
            "DYNO": "web.1",
            "TRUSTED_PROXY_COUNT": "1",
            # Long enough for any run; a 15-minute token could expire mid-bench.
            "JWT_ACCESS_MINUTES": "120",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("REDIS_URL", None)
    if port is not None:
        env["PORT"] = str(port)
    return env


def flask_command(env, *command):
    result = subprocess.run(
        [sys.executable, "-m", "flask", *command], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"flask {' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def gunicorn_command(args, app_module, port):
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        app_module,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(args.workers),
        "--worker-class",
        args.worker_class,
        "--timeout",
        "30",
    ]
    if args.threads > 1:
        command += ["--threads", str(args.threads)]
    if not args.no_access_log:
        command += ["--access-logfile", "-", "--access-logformat", PROCFILE_ACCESS_LOG_FORMAT]
    return command


# The Procfile's access log: the path without its query string.
PROCFILE_ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s" %(s)s %(b)s "%(f)s" "%(a)s"'


class Server:
    def __init__(self, label, app_module, args, database_url, log_dir):
        self.label = label
        self.port = free_port()
        self.command = gunicorn_command(args, app_module, self.port)
        self.env = dyno_env(args, database_url, self.port)
        self.log_path = Path(log_dir) / f"{label}.log"
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            self.command, cwd=PROJECT_ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} server exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if request("127.0.0.1", self.port, "GET", "/healthz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.label} server did not answer /healthz in 60 s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}{PATH}"


def request(host, port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json"} if payload else {}
        hdrs.update(headers or {})
        conn.request(method, path, body=payload, headers=hdrs)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# Load -----------------------------------------------------------------------


def run_wrk(url, token, args, duration):
    command = [
        "wrk",
        f"-t{args.load_threads}",
        f"-c{args.connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "--latency",
        "-H",
        f"Authorization: Bearer {token}",
        url,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    result["requests"] = int(re.search(r"(\d+) requests in", out).group(1))
    for pct in ("50", "99"):
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if match:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
            result[f"p{pct}"] = float(match.group(1)) * scale
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    result["bad"] = int(bad.group(1)) if bad else 0
    result["errors"] = errors.group(1).strip() if errors else ""
    return result


def run_python_load(url, token, args, duration):
    """Threads, each with one keep-alive connection (reopened when the server closes it)."""
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    headers = {"Authorization": f"Bearer {token}"}
    stop_at = time.monotonic() + duration
    latencies, bad, errors = [], [0], [0]
    lock = threading.Lock()

    def worker():
        mine, my_bad, my_errors = [], 0, 0
        conn = None
        while time.monotonic() < stop_at:
            if conn is None:
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
            started = time.perf_counter()
            try:
                conn.request("GET", PATH, headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                my_errors += 1
                conn.close()
                conn = None
                continue
            mine.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                my_bad += 1
            if response.will_close:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()
        with lock:
            latencies.extend(mine)
            bad[0] += my_bad
            errors[0] += my_errors

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(args.connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    result = {"rps": len(latencies) / elapsed, "requests": len(latencies), "bad": bad[0]}
    result["errors"] = f"{errors[0]} connection errors" if errors[0] else ""
    if latencies:
        result["p50"] = latencies[len(latencies) // 2]
        result["p99"] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return result


def load(url, token, args, duration):
    if args.load_tool == "wrk":
        return run_wrk(url, token, args, duration)
    return run_python_load(url, token, args, duration)


# Main -----------------------------------------------------------------------


def login(server):
    from crm_app.demo import DEMO_ADMIN

    status, body = request(
        "127.0.0.1", server.port, "POST", "/api/v1/auth/login", {"email": DEMO_ADMIN[0], "password": DEMO_ADMIN[1]}
    )
    if status != 200:
        sys.exit(f"login failed: {status} {body[:500]!r}")
    return json.loads(body)["token"]


def check_same_answer(servers, token):
    answers = {}
    for server in servers:
        status, body = request("127.0.0.1", server.port, "GET", PATH, headers={"Authorization": f"Bearer {token}"})
        if status != 200:
            sys.exit(f"{server.label}: GET {PATH} answered {status}: {body[:500]!r}")
        answers[server.label] = body
    bodies = list(answers.values())
    if any(body != bodies[0] for body in bodies):
        sys.exit("the two apps answer different bodies:\n" + "\n".join(f"{k}: {v!r}" for k, v in answers.items()))
    menus = json.loads(bodies[0])["list"]
    count = sum(1 + len(m["children"]) for m in menus)
    return len(bodies[0]), count


def fmt_ms(value):
    return f"{value:.1f} ms" if value is not None else "n/a"


def print_report(args, results, context):
    print()
    print("Settings")
    for key, value in context.items():
        print(f"  {key}: {value}")
    print()
    header = f"{'round':>5}  {'app':<5}  {'req/s':>9}  {'p50':>9}  {'p99':>9}  {'requests':>8}  non-200/errors"
    print(header)
    for number, pair in enumerate(results, 1):
        for label in ("real", "bare"):
            r = pair[label]
            print(
                f"{number:>5}  {label:<5}  {r['rps']:>9.1f}  {fmt_ms(r.get('p50')):>9}  {fmt_ms(r.get('p99')):>9}  "
                f"{r['requests']:>8}  {r['bad']}{' / ' + r['errors'] if r['errors'] else ''}"
            )
    real = statistics.median(pair["real"]["rps"] for pair in results)
    bare = statistics.median(pair["bare"]["rps"] for pair in results)
    ratio = real / bare if bare else float("nan")
    print()
    label = "median of rounds" if len(results) > 1 else "rates"
    print(f"{label}: real {real:.1f} req/s, bare {bare:.1f} req/s")
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    print(f"ratio real/bare: {ratio:.2f} ({verdict} the {TARGET_RATIO} target)")
    return ratio


def main(argv=None):
    args = parse_args(argv)
    if args.load == "auto":
        args.load_tool = "wrk" if shutil.which("wrk") else "python"
    else:
        args.load_tool = args.load
        if args.load == "wrk" and not shutil.which("wrk"):
            sys.exit("wrk is not installed")
    args.secret_key = secrets.token_hex(32)
    args.jwt_secret_key = secrets.token_hex(32)

    with scratch_database(args.admin_url, keep=args.keep_database) as database_url:
        env = dyno_env(args, database_url)
        print("release: flask db upgrade", flush=True)
        flask_command(env, "db", "upgrade")
        print("flask seed-demo", flush=True)
        flask_command({**env, "APP_ENV": "development"}, "seed-demo")  # a throwaway database: the published demo logins

        with tempfile.TemporaryDirectory() as log_dir:
            servers = [
                Server("real", "wsgi:app", args, database_url, log_dir),
                Server("bare", "bench.bare_app:app", args, database_url, log_dir),
            ]
            try:
                for server in servers:
                    print(f"starting {server.label}: gunicorn on 127.0.0.1:{server.port}", flush=True)
                    server.start()
                token = login(servers[0])
                body_bytes, menu_count = check_same_answer(servers, token)

                results = []
                for number in range(1, args.rounds + 1):
                    pair = {}
                    for server in servers:
                        print(f"round {number}: {server.label}: warm-up {args.warmup:g} s, load {args.duration:g} s")
                        if args.warmup > 0:
                            load(server.url, token, args, args.warmup)
                        pair[server.label] = load(server.url, token, args, args.duration)
                    results.append(pair)
            finally:
                for server in servers:
                    server.stop()

        context = {
            "date": date.today().isoformat(),
            "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}",
            "python / PostgreSQL": f"{platform.python_version()} / {server_version(database_url)}",
            "gunicorn": " ".join(servers[0].command[3:]).replace(f":{servers[0].port}", ":PORT"),
            "bare app": "bench.bare_app:app, same flags and environment",
            "request": f"GET {PATH} as the demo admin: {menu_count} menus, {body_bytes} bytes, same bytes from both",
            "load": (
                f"{args.load_tool}, {args.connections} connections"
                + (f", {args.load_threads} thread(s)" if args.load_tool == "wrk" else " (threads)")
                + f", {args.warmup:g} s warm-up, {args.duration:g} s measured, {args.rounds} round(s)"
            ),
        }
    print_report(args, results, context)
    failed = any(pair[label]["bad"] or pair[label]["errors"] for pair in results for label in pair)
    if failed:
        print("some requests failed: the rates above are not comparable")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
