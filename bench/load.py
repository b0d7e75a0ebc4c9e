"""Load: a realistic mix against the service run as the Procfile runs it, for a fixed time.

    pip install -e '.[bench]'            # locust
    python -m bench.load [--duration 60] [--users 24] [--clients 300] [--workers 2]

1. Creates a PostgreSQL database of its own, runs the release step (`flask db upgrade`)
   and `flask seed-demo`, and claims a Redis db number of its own (as the tests do).
2. Starts the Procfile's processes: `web` (gunicorn, `--workers 2 --worker-class sync
   --timeout 30 --access-logfile -`), `worker`, `clock` and `sim` (the MT simulator).
3. Builds a population through the API (not timed): 10 IBs under the demo IB, N clients
   spread over them with their KYC approved, two live MT5 accounts per client (money moves
   only through live accounts), one approved deposit of 1,000.00 per client; an hour of
   simulated trading on every account, synced into the CRM. The broker is configured to
   ask no email code for transfers between own accounts.
4. Runs locust (as a library) for `--duration` seconds after a short warm-up: client,
   IB and back-office users signing in, reading menus, permissions, trading accounts and
   report pages, and a few money operations (deposits submitted and approved, transfers).
5. Prints requests/s, p50/p95/p99 and errors (with the answers' bodies) per request type
   and overall, with the settings, the load average and the CPU each process group used;
   exits 1 when any request failed.
"""

import argparse
import os
import platform
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
REDIS_OWNER_KEY = "crm:test-run-owner"  # the same claim the test suite makes: never two users of one db
PASSWORD = "Bench-Granite-36"  # noqa: S105 - users of a throwaway database
TRADE_PASSWORD = "Trade1234x"  # noqa: S105
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
IB_COUNT = 10
STARTING_DEPOSIT = "1000.00"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before measuring")
    parser.add_argument("--users", type=int, default=24, help="concurrent locust users (1 admin, about 1 in 8 IBs)")
    parser.add_argument("--wait-min", type=float, default=0.1, help="think time between a user's tasks, min (s)")
    parser.add_argument("--wait-max", type=float, default=0.5, help="think time between a user's tasks, max (s)")
    parser.add_argument("--clients", type=int, default=300, help="clients created first (2 live accounts each)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn --workers (WEB_CONCURRENCY)")
    parser.add_argument("--worker-class", default="sync", help="gunicorn --worker-class")
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_DATABASE_ADMIN_URL", DEFAULT_ADMIN_URL))
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
        help="Redis without a db number (one is claimed); empty: no Redis, jobs in-process, no worker/clock",
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed of the mix")
    parser.add_argument("--prepare-users", type=int, help=argparse.SUPPRESS)  # the population's own process
    parser.add_argument("--keep-logs", action="store_true", help="print where the servers' logs are and keep them")
    return parser.parse_args(argv)


# Locust first: importing it patches the standard library for gevent, which must happen
# before requests, urllib3 or ssl are imported. The population step runs in a process
# of its own (database work through the app's services), without gevent.
PREPARING = __name__ == "__main__" and "--prepare-users" in sys.argv
try:
    if PREPARING:
        raise ImportError("no gevent in the population's process")
    import gevent
    from locust import FastHttpUser, between, events, task
    from locust.env import Environment
except ImportError:
    gevent = None
    FastHttpUser = object

    def task(weight=1):
        return lambda func: func


import requests  # noqa: E402

from bench.auth_get import free_port, libpq_url, scratch_database, server_version  # noqa: E402
from bench.deposit_approvals import wait_until_up  # noqa: E402

# Services -------------------------------------------------------------------


@contextmanager
def redis_database(base_url):
    """A Redis db number of our own (SET NX on the tests' owner key), flushed at the end."""
    if not base_url:
        yield None
        return
    import redis

    token = f"bench-{os.getpid()}-{uuid.uuid4().hex}"
    for number in range(15, 0, -1):
        connection = redis.Redis.from_url(f"{base_url.rstrip('/')}/{number}")
        if connection.set(REDIS_OWNER_KEY, token, nx=True, ex=6 * 3600):
            try:
                yield f"{base_url.rstrip('/')}/{number}"
            finally:
                connection.flushdb()
            return
    raise RuntimeError("no free Redis db number")


def procfile_commands(args, web_port, sim_port):
    python = sys.executable
    web = [
        python, "-m", "gunicorn", "wsgi:app",
        "--bind", f"127.0.0.1:{web_port}",
        "--workers", str(args.workers),
        "--worker-class", args.worker_class,
        "--timeout", "30",
        "--access-logfile", "-",
    ]  # fmt: skip
    commands = {
        "sim": [python, "-m", "flask", "mt-sim", "--host", "127.0.0.1", "--port", str(sim_port)],
        "web": web,
    }
    if args.redis_url:
        commands["worker"] = [python, "-m", "workers.worker"]
        commands["clock"] = [python, "-m", "workers.clock"]
    return commands


@contextmanager
def procfile_processes(commands, env, log_dir):
    processes = {}
    try:
        for name, command in commands.items():
            log = open(Path(log_dir) / f"{name}.log", "wb")  # noqa: SIM115 - closed below
            processes[name] = (subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=log), log)
        yield {name: process for name, (process, _) in processes.items()}
    finally:
        # The simulator last, so that nothing still working talks to a trading server that is gone.
        for process, log in reversed(processes.values()):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def flask(env, *command):
    result = subprocess.run(
        [sys.executable, "-m", "flask", *command], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"flask {' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


# Population (through the API, not timed) --------------------------------------------


def ok(answer, *expected):
    if answer.status_code not in (expected or (200, 201)):
        raise RuntimeError(f"{answer.request.method} {answer.request.url}: {answer.status_code} {answer.text[:500]}")
    return answer.json() if answer.content else None


def sign_in(base, email, password):
    answer = ok(requests.post(f"{base}/api/v1/auth/login", json={"email": email, "password": password}, timeout=60))
    return {"Authorization": f"Bearer {answer['token']}"}


def create_users(clients):
    """In a process of its own: IB_COUNT IBs under the demo IB, `clients` clients spread
    over them (the back office's `create_user`), and a signed-in session for each client.
    One password for all, hashed once at the production argon2 cost: a few hundred
    hashes would take minutes on 2 cores and measure nothing the load does not."""
    import json

    from crm_app import create_app
    from crm_app.admin.services import create_user
    from crm_app.auth import passwords
    from crm_app.auth.services import find_user_by_email, issue_tokens, start_session
    from crm_app.common.timeutil import utcnow
    from crm_app.demo import DEMO_IB
    from crm_app.extensions import db
    from crm_app.kyc.models import KycProfile

    app = create_app()
    with app.app_context():
        one_hash = passwords.hash_password(PASSWORD)
        passwords.hash_password = lambda password: one_hash
        demo_ib = find_user_by_email(DEMO_IB)

        def create(email, user_type, parent):
            values = {"email": email, "password": PASSWORD, "user_type": user_type, "parent_ib_id": parent.id}
            return create_user(values, actor=None, client=None)

        ibs = [create(f"ib{n}@load.example", "ib", demo_ib) for n in range(IB_COUNT)]
        population = {"ibs": [ib.email for ib in ibs], "clients": []}
        for n in range(clients):
            user = create(f"client{n}@load.example", "client", ibs[n % IB_COUNT])
            # Live accounts need approved KYC; the load measures money and reports, not the KYC
            # review, so each client's approved identity is recorded here.
            identity = {"first_name": "Load", "last_name": f"Client{n}", "country": "GB"}
            db.session.add(
                KycProfile(
                    user_id=user.id,
                    status="approved",
                    apply_status="approved",
                    data={"identity": identity},
                    completed_modules=["identity"],
                    kyc_way="manual",
                    approved_at=utcnow(),
                )
            )
            session = start_session(user, None)
            db.session.commit()
            population["clients"].append({"email": user.email, "token": issue_tokens(user, session)["token"]})
    json.dump(population, sys.stdout)


def build_population(args, env, base, sim_base, log=print):
    import json

    from crm_app.demo import DEMO_ADMIN

    started = time.monotonic()
    command = [sys.executable, "-m", "bench.load", "--prepare-users", str(args.clients)]
    made = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    if made.returncode != 0:
        raise RuntimeError(f"creating the users failed:\n{made.stderr[-3000:]}")
    users = json.loads(made.stdout)
    clients = len(users["clients"])
    log(f"  {IB_COUNT} IBs and {clients} clients created ({time.monotonic() - started:.0f} s)")
    admin = sign_in(base, *DEMO_ADMIN)
    # A broker may let transfers between a client's own accounts go without an email
    # code; this one does, or every transfer would need a mail read in the middle.
    no_code = {"email_code_required": {"transfer": False}}
    ok(requests.put(f"{base}/api/v1/admin/config/broker", json=no_code, headers=admin, timeout=60))

    client_headers = {"Authorization": f"Bearer {users['clients'][0]['token']}"}
    types = ok(
        requests.get(
            f"{base}/api/v1/client/trading-account-types?trading_platform=MT5", headers=client_headers, timeout=60
        )
    )
    live_type = next(t for t in types["list"] if not t["is_demo"] and t["fund_direction"] == "normal")
    channels = ok(requests.get(f"{base}/api/v1/client/deposit-channels", headers=client_headers, timeout=60))["list"]
    channel = next(c for c in channels if "USD" in c["allowed_currencies"])

    def apply_for_accounts(user):
        headers = {"Authorization": f"Bearer {user['token']}"}
        for _ in range(2):
            body = {
                "currency": "USD",
                "leverage": live_type["leverage_options"][0]["value"],
                "password": TRADE_PASSWORD,
                "trading_account_type_id": live_type["id"],
                "trading_platform": "MT5",
            }
            ok(requests.post(f"{base}/api/v1/client/account-applications", json=body, headers=headers, timeout=60))

    def deposit_into_first_account(user):
        headers = {"Authorization": f"Bearer {user['token']}"}
        accounts = ok(requests.get(f"{base}/api/v1/client/trading-accounts", headers=headers, timeout=60))["list"]
        accounts = sorted(a["id"] for a in accounts)
        receipt = ok(
            requests.post(
                f"{base}/api/v1/uploads",
                files={"file": ("receipt.png", PNG, "image/png")},
                headers=headers,
                timeout=60,
            )
        )["url"]
        draft = ok(
            requests.post(
                f"{base}/api/v1/client/deposits",
                json={
                    "deposit_amount": STARTING_DEPOSIT,
                    "remittance_id": channel["id"],
                    "trading_account_id": accounts[0],
                },
                headers=headers,
                timeout=60,
            )
        )
        body = {"order_number": draft["order_number"], "receipt_url": receipt}
        ok(requests.post(f"{base}/api/v1/client/deposits/submit", json=body, headers=headers, timeout=60))
        return {"email": user["email"], "accounts": accounts, "receipt": receipt}

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(apply_for_accounts, users["clients"]))
    approve_all_pending(base, admin, "account_application")
    log(f"  {2 * clients} live accounts opened ({time.monotonic() - started:.0f} s)")
    with ThreadPoolExecutor(4) as pool:
        population = list(pool.map(deposit_into_first_account, users["clients"]))
    log(f"  {clients} deposits submitted ({time.monotonic() - started:.0f} s)")

    approve_all_pending(base, admin)
    log(f"  {clients} deposits approved ({time.monotonic() - started:.0f} s)")

    # History for the reports: an hour of trading on every account, then a sync.
    ok(requests.post(f"{sim_base}/sim/activity", json={"minutes": 60, "seed": 1}, timeout=600))
    runs_before = {row["server_id"]: row["runs"] for row in sync_states(base, admin)}
    ok(requests.post(f"{base}/api/v1/admin/sync", json={}, headers=admin, timeout=600), 200, 202)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        states = [row for row in sync_states(base, admin) if row["enabled"]]
        if all(row["runs"] > runs_before.get(row["server_id"], 0) and not row["running"] for row in states):
            break
        time.sleep(1)
    else:
        raise RuntimeError(f"the sync did not finish in 300 s: {states}")
    closed = ok(
        requests.get(f"{base}/api/v1/reports/history-orders?trading_type=all&size=1", headers=admin, timeout=60)
    )["total"]
    log(f"  trading history synced: {closed} closed orders in the CRM ({time.monotonic() - started:.0f} s)")
    return {"clients": population, "ibs": users["ibs"], "channel": channel["id"], "closed_orders": closed}


def sync_states(base, admin):
    return ok(requests.get(f"{base}/api/v1/admin/sync", headers=admin, timeout=60))["list"]


def approve_all_pending(base, admin, review_type="deposit"):
    while True:
        pending = ok(
            requests.get(
                f"{base}/api/v1/admin/audits?type={review_type}&status=pending&size=200", headers=admin, timeout=60
            )
        )["list"]
        if not pending:
            return

        def approve(item):
            ok(requests.post(f"{base}/api/v1/admin/audits/{item['id']}/approve", json={}, headers=admin, timeout=60))

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(approve, pending))


# The mix --------------------------------------------------------------------------


def month_range():
    end = datetime.now() + timedelta(days=1)
    return {
        "start_time": (end - timedelta(days=31)).strftime("%Y-%m-%d 00:00:00"),
        "end_time": end.strftime("%Y-%m-%d 00:00:00"),
    }


class Portal(FastHttpUser):
    """What every signed-in user does: the portal's shell (menus, permissions)."""

    abstract = True
    population = None  # set by run_load
    email = password = None
    headers = {}

    def sign_in(self):
        self.headers = {}
        answer = self.post("/api/v1/auth/login", "POST /auth/login", {"email": self.email, "password": self.password})
        if answer.status_code == 200:
            self.headers = {"Authorization": f"Bearer {answer.json()['token']}"}

    def call(self, method, path, name, **options):
        """One request; a 4xx or 5xx is an error whose message keeps the answer's body."""
        with self.client.request(
            method, path, headers=self.headers, name=name, catch_response=True, **options
        ) as answer:
            if answer.status_code >= 400 or answer.status_code == 0:
                answer.failure(f"{answer.status_code} {(answer.text or '')[:300]}")
            return answer

    def get(self, path, name, params=None):
        query = f"?{urlencode(params)}" if params else ""
        return self.call("GET", path + query, name)

    def post(self, path, name, body):
        return self.call("POST", path, name, json=body)

    @task(1)
    def login_again(self):
        self.sign_in()

    @task(6)
    def menus(self):
        self.get("/api/v1/menus", "GET /menus")

    @task(4)
    def permissions(self):
        self.get("/api/v1/auth/permissions", "GET /auth/permissions")

    @task(3)
    def report_deposits(self):
        self.get("/api/v1/reports/deposits", "GET /reports/deposits", {"status": "all", **month_range()})

    @task(3)
    def report_history_orders(self):
        params = {"trading_type": "all", "time_type": "close", **month_range()}
        self.get("/api/v1/reports/history-orders", "GET /reports/history-orders", params)

    @task(2)
    def report_transfers(self):
        self.get("/api/v1/reports/transfers", "GET /reports/transfers", {"status": "all", **month_range()})

    @task(1)
    def report_positions(self):
        self.get("/api/v1/reports/positions", "GET /reports/positions", {"trading_type": "all"})


class Client(Portal):
    weight = 16

    def on_start(self):
        self.me = self.population["clients"].pop()
        self.email, self.password = self.me["email"], PASSWORD
        self.sign_in()
        self.direction = 0

    @task(6)
    def trading_accounts(self):
        self.get("/api/v1/client/trading-accounts", "GET /client/trading-accounts")

    @task(1)
    def trading_account(self):
        self.get(f"/api/v1/client/trading-accounts/{self.me['accounts'][0]}", "GET /client/trading-accounts/{id}")

    @task(1)
    def own_deposits(self):
        self.get("/api/v1/client/deposits", "GET /client/deposits")

    @task(1)
    def transfer(self):
        """1.00 from one own account to the other, back the next time: balances stay put."""
        source, target = self.me["accounts"][self.direction], self.me["accounts"][1 - self.direction]
        self.direction = 1 - self.direction
        body = {
            "source_trading_account_id": source,
            "target_trading_account_id": target,
            "amount": "1.00",
            "remark": "load test",
        }
        self.post("/api/v1/client/transfers", "POST /client/transfers", body)

    @task(1)
    def deposit(self):
        """A draft, then its submission with the receipt: it waits for the admin's review."""
        body = {
            "deposit_amount": "100.00",
            "remittance_id": self.population["channel"],
            "trading_account_id": self.me["accounts"][0],
        }
        answer = self.post("/api/v1/client/deposits", "POST /client/deposits", body)
        if answer.status_code != 201:
            return
        order_number = answer.json()["order_number"]
        submit = {"order_number": order_number, "receipt_url": self.me["receipt"]}
        self.post("/api/v1/client/deposits/submit", "POST /client/deposits/submit", submit)


class IntroducingBroker(Portal):
    weight = 2

    def on_start(self):
        self.email, self.password = random.choice(self.population["ibs"]), PASSWORD
        self.sign_in()

    @task(3)
    def clients(self):
        self.get("/api/v1/ib/clients", "GET /ib/clients", {"scope": "all"})

    @task(3)
    def client_accounts(self):
        self.get("/api/v1/ib/client-trading-accounts", "GET /ib/client-trading-accounts", {"scope": "all"})


class BackOffice(Portal):
    """The one admin: reads the review queue and approves the deposits clients submit."""

    fixed_count = 1

    def on_start(self):
        from crm_app.demo import DEMO_ADMIN

        self.email, self.password = DEMO_ADMIN
        self.sign_in()

    @task(6)
    def approve_deposits(self):
        answer = self.get(
            "/api/v1/admin/audits", "GET /admin/audits", {"type": "deposit", "status": "pending", "size": 5}
        )
        if answer.status_code != 200:
            return
        for item in answer.json()["list"]:
            self.post(f"/api/v1/admin/audits/{item['id']}/approve", "POST /admin/audits/{id}/approve", {})

    @task(2)
    def users(self):
        self.get("/api/v1/admin/users", "GET /admin/users", {"user_type": "client"})


class CpuMeter:
    """CPU seconds used during the measured window: by each Procfile process (with its
    children), by PostgreSQL's backends for our database, by this load generator, and by
    everything else on the machine (other work sharing the cores makes numbers lower)."""

    def __init__(self, processes, database_url):
        self.processes, self.database_url = processes, database_url
        self.ticks = os.sysconf("SC_CLK_TCK")

    def _stat(self, pid):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return int(fields[1]), (int(fields[11]) + int(fields[12])) / self.ticks  # ppid, utime + stime

    def _groups(self):
        stats = {int(pid): self._stat(pid) for pid in os.listdir("/proc") if pid.isdigit()}
        stats = {pid: stat for pid, stat in stats.items() if stat}
        children = {}
        for pid, (ppid, _) in stats.items():
            children.setdefault(ppid, []).append(pid)

        def tree(root):
            found, todo = set(), [root]
            while todo:
                pid = todo.pop()
                found.add(pid)
                todo += children.get(pid, [])
            return found

        groups = {name: tree(process.pid) for name, process in self.processes.items()}
        groups["PostgreSQL (our database)"] = set(self._backends())
        groups["load generator"] = {os.getpid()}
        return {name: {pid: stats[pid][1] for pid in pids if pid in stats} for name, pids in groups.items()}

    def _backends(self):
        import psycopg

        with psycopg.connect(libpq_url(self.database_url), autocommit=True) as conn:
            query = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            return [row[0] for row in conn.execute(query)]

    @staticmethod
    def _machine_busy():
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        return sum(values) - values[3] - values[4]  # all but idle and iowait

    def start(self):
        self.before, self.busy_before, self.started = self._groups(), self._machine_busy(), time.monotonic()

    def stop(self):
        after, busy = self._groups(), self._machine_busy()
        used = {
            name: sum(seconds - self.before.get(name, {}).get(pid, 0.0) for pid, seconds in pids.items())
            for name, pids in after.items()
        }
        used["everything else"] = max(0.0, (busy - self.busy_before) / self.ticks - sum(used.values()))
        available = (time.monotonic() - self.started) * os.cpu_count()
        return {name: (seconds, seconds / available) for name, seconds in used.items()}


def run_load(args, base, population, meter=None):
    random.seed(args.seed)
    Portal.population = population
    Portal.wait_time = between(args.wait_min, args.wait_max)
    environment = Environment(user_classes=[Client, IntroducingBroker, BackOffice], host=base, events=events)
    runner = environment.create_local_runner()
    runner.start(args.users, spawn_rate=max(args.users, 1) * 2)
    gevent.sleep(args.warmup)
    environment.stats.reset_all()
    if meter:
        meter.start()
    started = time.monotonic()
    gevent.sleep(args.duration)
    elapsed = time.monotonic() - started
    cpu = meter.stop() if meter else {}
    stats = environment.stats
    rows = [entry for entry in stats.entries.values()]
    rows.sort(key=lambda entry: -entry.num_requests)
    result = {
        "elapsed": elapsed,
        "rows": [summarise(entry, elapsed) for entry in rows],
        "total": summarise(stats.total, elapsed),
        "errors": [(e.method, e.name, str(e.error), e.occurrences) for e in stats.errors.values()],
        "user_counts": dict(runner.user_classes_count),
        "cpu": cpu,
    }
    runner.quit()
    return result


def summarise(entry, elapsed):
    def pct(q):
        return entry.get_response_time_percentile(q) if entry.num_requests else 0

    return {
        "name": entry.name if entry.name != "Aggregated" else "all requests",
        "requests": entry.num_requests,
        "failures": entry.num_failures,
        "rps": entry.num_requests / elapsed,
        "p50": pct(0.5),
        "p95": pct(0.95),
        "p99": pct(0.99),
        "max": entry.max_response_time or 0,
    }


# Main -----------------------------------------------------------------------


def load_average():
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def print_report(args, context, result):
    print()
    for key, value in context.items():
        print(f"{key}: {value}")
    print()
    print(f"{'request':<40} {'count':>7} {'req/s':>7} {'p50':>6} {'p95':>6} {'p99':>6} {'max':>6} {'errors':>6}")
    for row in [*result["rows"], result["total"]]:
        print(
            f"{row['name']:<40} {row['requests']:>7} {row['rps']:>7.1f} {row['p50']:>6.0f} {row['p95']:>6.0f} "
            f"{row['p99']:>6.0f} {row['max']:>6.0f} {row['failures']:>6}"
        )
    print("(latencies in ms; locust rounds those above 100 ms to 10 ms)")
    if result["cpu"]:
        print()
        print("CPU during the measured window (seconds, share of all cores):")
        for name, (seconds, share) in result["cpu"].items():
            print(f"  {name:<28} {seconds:7.1f} s  {100 * share:5.1f} %")
    for method, name, error, count in result["errors"]:
        print(f"ERROR {count}x {method} {name}: {error}")


def main(argv=None):
    args = parse_args(argv)
    if args.prepare_users is not None:
        return create_users(args.prepare_users)
    if gevent is None:
        sys.exit("locust is not installed: pip install -e '.[bench]'")
    with scratch_database(args.admin_url) as database_url, redis_database(args.redis_url) as redis_url:
        args.redis_url = redis_url
        log_dir = tempfile.mkdtemp(prefix="crm-load-")
        web_port, sim_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "SQLALCHEMY_", "REDIS_URL"))}
        env.update(
            {
                "APP_ENV": "production",
                "DATABASE_URL": database_url,
                "PORT": str(web_port),
                "WEB_CONCURRENCY": str(args.workers),
                "SECRET_KEY": secrets.token_hex(32),
                "JWT_SECRET_KEY": secrets.token_hex(32),
                "JWT_ACCESS_MINUTES": "120",  # no token may expire mid-run
                "MT_SIM_PORT": str(sim_port),
                "MT_SIMULATOR_URL": f"http://127.0.0.1:{sim_port}",
                "MT_SIM_DATABASE_URL": f"sqlite:///{log_dir}/mt_sim.db",
                "UPLOAD_FOLDER": f"{log_dir}/uploads",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if redis_url:
            env["REDIS_URL"] = redis_url
        print("release: flask db upgrade; flask seed-demo", flush=True)
        flask(env, "db", "upgrade")
        flask({**env, "APP_ENV": "development"}, "seed-demo")  # a throwaway database: the published demo logins
        commands = procfile_commands(args, web_port, sim_port)
        base, sim_base = f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{sim_port}"
        with procfile_processes(commands, env, log_dir) as processes:
            wait_until_up(f"{sim_base}/sim/health", processes["sim"])
            wait_until_up(f"{base}/healthz", processes["web"])
            print(f"processes up: {', '.join(commands)}; building the population", flush=True)
            population = build_population(args, env, base, sim_base, log=lambda line: print(line, flush=True))
            if args.users - 1 > len(population["clients"]):
                sys.exit("more users than clients: raise --clients")
            load_before = load_average()
            print(f"load: {args.users} users, {args.warmup:g} s warm-up, {args.duration:g} s measured", flush=True)
            result = run_load(args, base, population, CpuMeter(processes, database_url))
            load_after = load_average()
            gone = [name for name, process in processes.items() if process.poll() is not None]
        pg_version = server_version(libpq_url(database_url))
        users = ", ".join(f"{name} {count}" for name, count in result["user_counts"].items())
        context = {
            "date": date.today().isoformat(),
            "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}",
            "Python / PostgreSQL": f"{platform.python_version()} / {pg_version}",
            "processes": ", ".join(commands) + ("" if redis_url else " (no Redis: jobs in-process)"),
            "gunicorn": " ".join(commands["web"][3:]).replace(f":{web_port}", ":PORT"),
            "population": (
                f"{IB_COUNT} IBs, {args.clients} clients, {2 * args.clients} live MT5 accounts, "
                f"{population['closed_orders']} closed orders"
            ),
            "load": (
                f"locust, {args.users} users ({users}), think time {args.wait_min:g}-{args.wait_max:g} s, "
                f"{args.warmup:g} s warm-up, {result['elapsed']:.0f} s measured"
            ),
            "load average (1/5/15 min) before / after": f"{load_before} / {load_after}",
        }
        if gone:
            context["processes that exited during the run"] = ", ".join(gone)
        print_report(args, context, result)
        if args.keep_logs:
            print(f"logs kept in {log_dir}")
        else:
            subprocess.run(["rm", "-rf", log_dir], check=False)
    failed = result["total"]["failures"] > 0 or gone
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
