"""Demo accounts per second: POST /api/v1/client/trading-accounts against the MT simulator.

    python -m bench.demo_accounts [--accounts 1000] [--concurrency 8] [--rounds 1] [--workers 2]
                                  [--sim-database sqlite|postgres] [--admin-url URL] [--max-load 1.0]

1. Creates a PostgreSQL database of its own for the CRM (through the admin URL) and a
   database of its own for the simulator: a SQLite file in a temporary directory, or a
   second PostgreSQL database with `--sim-database postgres`.
2. Starts the simulator as the Procfile's `sim` line does (`flask mt-sim --host H --port P`,
   `MT_SIM_DATABASE_URL` pointing at its database) on a free port and waits until it answers.
3. Runs the release step (`flask db upgrade`) and `flask seed-demo` with `MT_SIMULATOR_URL`
   pointing at that simulator, so the demo trading servers are the simulator's, then starts
   gunicorn for `wsgi:app` with the Procfile's web flags and a web dyno's environment.
4. Signs in as the demo client, finds the "Demo Standard" account type (MT5), optionally
   waits for the machine to calm down (`--max-load`), and opens `--accounts` demo accounts
   from `--concurrency` threads, each with one keep-alive http.client connection (reopened
   when the server closes it, which gunicorn's sync workers do after every answer).
   Nothing is retried: a failure counts as an error.
5. Checks the outcome: the CRM's database holds exactly N new trading accounts of the demo
   client with N distinct logins (the ids the API answered), the API lists them, and every
   login exists on the simulator (its own database) in the account type's group, leverage 100.
6. Prints accounts/s, p50/p95/p99 latency, errors, the CPU time each process group used
   during the run (gunicorn, simulator, the bench databases' PostgreSQL backends, the client,
   everything else on the machine) and the settings; stops both servers and drops both
   databases, whatever happened.

`--concurrency 1,4,8` runs the whole sequence once per level, each on fresh databases;
`--rounds R` repeats that list and reports medians.
Exit status: 0 when every request answered 201 and every check passed, 1 otherwise.
"""

import argparse
import http.client
import json
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, closing, contextmanager
from datetime import date
from pathlib import Path

import psycopg
from sqlalchemy import create_engine, select

from bench.auth_get import free_port, libpq_url, request, scratch_database, server_version
from crm_app.integrations.trading.simulator import db as simdb

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
PATH = "/api/v1/client/trading-accounts"
ACCOUNT_TYPE = "Demo Standard"
LEVERAGE = 100
TRADING_PASSWORD = "Trade1234x"  # noqa: S105 - a bench value, checked against the MT rules


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--accounts", type=int, default=1000, help="demo accounts to open per run")
    parser.add_argument(
        "--concurrency", default="8", help="client threads (keep-alive connections); a list such as 1,4,8 runs each"
    )
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_DATABASE_ADMIN_URL", DEFAULT_ADMIN_URL))
    parser.add_argument("--workers", type=int, default=2, help="gunicorn --workers (WEB_CONCURRENCY)")
    parser.add_argument(
        "--sim-database",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="the simulator's book: a SQLite file in a temporary directory, or a second PostgreSQL database",
    )
    parser.add_argument("--no-access-log", action="store_true", help="drop the Procfile's --access-logfile -")
    parser.add_argument(
        "--max-load",
        type=float,
        default=None,
        help="before measuring, wait (up to --max-load-wait s) until the 1-minute load average is below this",
    )
    parser.add_argument("--max-load-wait", type=float, default=900.0)
    parser.add_argument("--rounds", type=int, default=1, help="repeat the concurrency list; medians are reported")
    parser.add_argument("--keep-database", action="store_true", help="do not drop the databases at the end")
    args = parser.parse_args(argv)
    try:
        args.levels = [int(level) for level in args.concurrency.split(",") if level.strip()]
    except ValueError:
        parser.error("--concurrency: integers separated by commas")
    if not args.levels or min(args.levels) < 1 or args.accounts < 1 or args.rounds < 1:
        parser.error("--accounts, --concurrency and --rounds must be at least 1")
    return args


# Environment and processes -----------------------------------------------------------


def dyno_env(args, database_url, simulator_url, sim_database_url, port=None):
    """A Heroku-style dyno's environment: host-set variables plus the README's config vars."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "SQLALCHEMY_", "MT_SIM"))}
    env.update(
        {
            "APP_ENV": "production",
            "DATABASE_URL": database_url,
            "SECRET_KEY": args.secret_key,
            "JWT_SECRET_KEY": args.jwt_secret_key,
            "WEB_CONCURRENCY": str(args.workers),
            "DYNO": "web.1",
            "TRUSTED_PROXY_COUNT": "1",
            # A 15-minute token could expire in a slow run.
            "JWT_ACCESS_MINUTES": "120",
            "MT_SIMULATOR_URL": simulator_url,
            "MT_SIM_DATABASE_URL": sim_database_url,
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
        raise RuntimeError(f"flask {' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


class Process:
    """A server subprocess with its log in a file; stop() is safe to call at any time."""

    def __init__(self, label, command, env, log_dir, health_path):
        self.label = label
        self.command = command
        self.env = env
        self.log_path = Path(log_dir) / f"{label}.log"
        self.health_path = health_path
        self.port = None
        self.proc = None
        self.log = None

    def start(self, port):
        self.port = port
        self.log = open(self.log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            self.command, cwd=PROJECT_ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if request("127.0.0.1", port, "GET", self.health_path)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.label} did not answer {self.health_path} in 60 s")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log is not None:
            self.log.close()
            self.log = None

    def pids(self):
        """The process and its children (gunicorn's workers)."""
        if self.proc is None:
            return []
        return [self.proc.pid, *children_of(self.proc.pid)]


def gunicorn_command(args, port):
    # The Procfile's web line, bound to 127.0.0.1.
    command = [sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", str(args.workers), "--worker-class", "sync", "--timeout", "30"]
    if not args.no_access_log:
        command += ["--access-logfile", "-"]
    return command


@contextmanager
def simulator_database(args, tmp_dir):
    if args.sim_database == "postgres":
        with scratch_database(args.admin_url, keep=args.keep_database) as url:
            yield url
    else:
        yield f"sqlite:///{Path(tmp_dir) / 'mt_sim.db'}"


# CPU accounting (Linux /proc; silently empty elsewhere) --------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_stat(pid):
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return {"comm": comm, "ppid": int(fields[1]), "cpu": (int(fields[11]) + int(fields[12])) / CLOCK_TICKS}


def all_pids():
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def children_of(pid):
    return [p for p in all_pids() if (stat := proc_stat(p)) and stat["ppid"] == pid]


def machine_busy():
    """(busy, total) CPU seconds of the whole machine since boot."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return None
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


def cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def cpu_snapshot(web, sim, database_names):
    """CPU seconds so far, per process group and per process id."""

    def per_pid(pids):
        return {pid: stat["cpu"] for pid in pids if (stat := proc_stat(pid))}

    # A backend's title names its database: "postgres: 15/main: postgres crm_bench_... 127.0.0.1(...)".
    backends = [
        pid
        for pid in all_pids()
        if (stat := proc_stat(pid))
        and stat["comm"].startswith("postgres")
        and any(f" {name} " in cmdline(pid) for name in database_names)
    ]
    own = os.times()
    return {
        "gunicorn (master + workers)": per_pid(web.pids()),
        "simulator": per_pid(sim.pids()),
        "PostgreSQL (the bench databases' backends)": per_pid(backends),
        "bench client": {os.getpid(): own.user + own.system},
        "_machine": machine_busy(),
    }


def cpu_delta(before, after, elapsed):
    rows = {
        key: sum(cpu - before[key].get(pid, 0.0) for pid, cpu in after[key].items())
        for key in before
        if not key.startswith("_")
    }
    if before["_machine"] and after["_machine"]:
        busy = after["_machine"][0] - before["_machine"][0]
        total = after["_machine"][1] - before["_machine"][1]
        rows["everything else on the machine"] = max(0.0, busy - sum(rows.values()))
        rows["_machine"] = {"busy": busy, "cores_busy": busy / elapsed, "percent": 100 * busy / total if total else 0}
    return rows


def wait_for_quiet(max_load, max_wait):
    if max_load is None or not hasattr(os, "getloadavg"):
        return None
    deadline = time.monotonic() + max_wait
    load = os.getloadavg()[0]
    while load >= max_load and time.monotonic() < deadline:
        print(f"  load average {load:.2f} >= {max_load:g}: waiting", flush=True)
        time.sleep(15)
        load = os.getloadavg()[0]
    if load >= max_load:
        print(f"  load average still {load:.2f} after {max_wait:g} s: measuring anyway", flush=True)
    return load


# The API ---------------------------------------------------------------------------------


def api(port, method, path, token=None, body=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, raw = request("127.0.0.1", port, method, path, body, headers)
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        data = raw[:500]
    return status, data


def login_client(port):
    from crm_app.demo import DEMO_CLIENT, DEMO_PASSWORD

    status, data = api(port, "POST", "/api/v1/auth/login", body={"email": DEMO_CLIENT, "password": DEMO_PASSWORD})
    if status != 200:
        raise RuntimeError(f"demo client login failed: {status} {data!r}")
    return data["token"]


def demo_account_type_id(port, token):
    status, data = api(port, "GET", "/api/v1/client/trading-account-types?trading_platform=MT5&size=200", token)
    if status != 200:
        raise RuntimeError(f"account types: {status} {data!r}")
    for row in data["list"]:
        if row.get("name") == ACCOUNT_TYPE:
            return row["id"]
    raise RuntimeError(f"no {ACCOUNT_TYPE!r} account type among {[row.get('name') for row in data['list']]}")


def open_accounts(port, token, type_id, count, concurrency):
    """POST the same body `count` times from `concurrency` threads; nothing is retried."""
    payload = json.dumps(
        {
            "currency": "USD",
            "is_demo": True,
            "leverage": LEVERAGE,
            "password": TRADING_PASSWORD,
            "trading_account_type_id": type_id,
            "trading_platform": "MT5",
        }
    ).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    next_index = iter(range(count))
    index_lock = threading.Lock()
    results = []  # (latency ms, status or None, account id or error text)
    results_lock = threading.Lock()
    start = threading.Barrier(concurrency + 1)

    def take():
        with index_lock:
            return next(next_index, None)

    def worker():
        mine = []
        conn = None
        start.wait()
        while take() is not None:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            began = time.perf_counter()
            try:
                conn.request("POST", PATH, body=payload, headers=headers)
                response = conn.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException) as exc:
                mine.append(((time.perf_counter() - began) * 1000, None, repr(exc)))
                conn.close()
                conn = None
                continue
            latency = (time.perf_counter() - began) * 1000
            if response.status == 201:
                mine.append((latency, 201, json.loads(raw)["trading_account_id"]))
            else:
                mine.append((latency, response.status, raw[:300].decode(errors="replace")))
            if response.will_close:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()
        with results_lock:
            results.extend(mine)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - began


def percentile(sorted_values, pct):
    """Nearest rank: the smallest value with at least pct % of the values at or below it (pct an integer)."""
    if not sorted_values:
        return None
    rank = -(-pct * len(sorted_values) // 100)
    return sorted_values[min(len(sorted_values), max(1, rank)) - 1]


# Checks ------------------------------------------------------------------------------------


def crm_accounts(database_url, email):
    """{trading account id: (login, leverage, server name, server base URL, MT group)} of that user."""
    query = """
        SELECT ta.id, ta.login, ta.leverage, ts.name, ts.base_url, at.mt_group
        FROM trading_accounts ta
        JOIN users u ON u.id = ta.user_id
        JOIN trading_servers ts ON ts.id = ta.server_id
        JOIN trading_account_types at ON at.id = ta.account_type_id
        WHERE u.email = %s
    """
    with closing(psycopg.connect(libpq_url(database_url))) as conn:
        return {row[0]: row[1:] for row in conn.execute(query, (email,))}


def simulator_accounts(sim_database_url, server_key):
    """{login: (group, leverage)} on one simulated server, read from the simulator's own tables."""
    engine = create_engine(simdb.normalise_url(sim_database_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(simdb.accounts.c.login, simdb.accounts.c.group_name, simdb.accounts.c.leverage).where(
                    simdb.accounts.c.server_key == server_key
                )
            )
            return {row.login: (row.group_name, row.leverage) for row in rows}
    finally:
        engine.dispose()


def verify(count, results, before, after, listed_total, sim_book):
    """Problems found, as sentences (empty: all good)."""
    problems = []
    new = {key: value for key, value in after.items() if key not in before}
    answered_ids = {detail for _, status, detail in results if status == 201}
    logins = {row[0] for row in new.values()}
    if len(new) != count:
        problems.append(f"the CRM holds {len(new)} new trading accounts, expected {count}")
    if len(logins) != len(new):
        problems.append(f"{len(new)} new accounts but only {len(logins)} distinct logins")
    if answered_ids != set(new):
        problems.append(
            f"ids answered by the API and rows in the database differ: {len(answered_ids - set(new))} answered "
            f"but missing, {len(set(new) - answered_ids)} in the database but not answered"
        )
    if listed_total != len(after):
        problems.append(f"GET {PATH} lists {listed_total} accounts, the database holds {len(after)}")
    wrong = [key for key, row in new.items() if row[1] != LEVERAGE or row[2] != "Demo MT5"]
    if wrong:
        problems.append(f"{len(wrong)} new accounts are not Demo MT5 / leverage {LEVERAGE}")
    missing = [row[0] for row in new.values() if row[0] not in sim_book]
    if missing:
        problems.append(f"{len(missing)} logins are missing on the simulator, e.g. {missing[:5]}")
    mismatched = [row[0] for row in new.values() if row[0] in sim_book and sim_book[row[0]] != (row[4], LEVERAGE)]
    if mismatched:
        problems.append(f"{len(mismatched)} simulator accounts have another group or leverage, e.g. {mismatched[:5]}")
    return problems


# One run -------------------------------------------------------------------------------------


def run(args, concurrency):
    from crm_app.demo import DEMO_CLIENT

    args.secret_key = secrets.token_hex(32)
    args.jwt_secret_key = secrets.token_hex(32)
    outcome = {"concurrency": concurrency}
    with ExitStack() as stack:
        tmp_dir = stack.enter_context(tempfile.TemporaryDirectory())
        database_url = stack.enter_context(scratch_database(args.admin_url, keep=args.keep_database))
        sim_database_url = stack.enter_context(simulator_database(args, tmp_dir))

        sim_port = free_port()
        simulator_url = f"http://127.0.0.1:{sim_port}"
        env = dyno_env(args, database_url, simulator_url, sim_database_url)
        sim_env = {**env, "MT_SIM_PORT": str(sim_port)}
        sim = Process(
            "simulator",
            [sys.executable, "-m", "flask", "mt-sim", "--host", "127.0.0.1", "--port", str(sim_port)],
            sim_env,
            tmp_dir,
            "/sim/health",
        )
        stack.callback(sim.stop)
        print(f"simulator: flask mt-sim on 127.0.0.1:{sim_port}, book in {args.sim_database}", flush=True)
        sim.start(sim_port)

        print("release: flask db upgrade", flush=True)
        flask_command(env, "db", "upgrade")
        print(f"flask seed-demo (MT_SIMULATOR_URL={simulator_url})", flush=True)
        flask_command({**env, "APP_ENV": "development"}, "seed-demo")  # a throwaway database: the published demo logins

        web_port = free_port()
        web = Process(
            "web",
            gunicorn_command(args, web_port),
            dyno_env(args, database_url, simulator_url, sim_database_url, web_port),
            tmp_dir,
            "/healthz",
        )
        stack.callback(web.stop)
        print(f"web: gunicorn wsgi:app on 127.0.0.1:{web_port}, {args.workers} sync workers", flush=True)
        web.start(web_port)

        token = login_client(web_port)
        type_id = demo_account_type_id(web_port, token)
        before = crm_accounts(database_url, DEMO_CLIENT)
        outcome["load_before"] = wait_for_quiet(args.max_load, args.max_load_wait)

        print(f"opening {args.accounts} demo accounts with {concurrency} connection(s)", flush=True)
        urls = (database_url, sim_database_url)
        database_names = {url.rsplit("/", 1)[1] for url in urls if url.startswith("postgres")}
        cpu_before = cpu_snapshot(web, sim, database_names)
        results, elapsed = open_accounts(web_port, token, type_id, args.accounts, concurrency)
        outcome["cpu"] = cpu_delta(cpu_before, cpu_snapshot(web, sim, database_names), elapsed)

        after = crm_accounts(database_url, DEMO_CLIENT)
        status, listed = api(web_port, "GET", f"{PATH}?page=1&size=1", token)
        listed_total = listed["total"] if status == 200 else None
        server_keys = {row[3].rstrip("/").rsplit("/", 1)[1] for key, row in after.items() if key not in before}
        sim_book = {}
        for server_key in server_keys:
            sim_book.update(simulator_accounts(sim_database_url, server_key))
        outcome["problems"] = verify(args.accounts, results, before, after, listed_total, sim_book)
        outcome["checked"] = {
            "new CRM accounts": len(after) - len(before),
            "distinct logins": len({row[0] for key, row in after.items() if key not in before}),
            "listed by the API": listed_total,
            "simulator accounts on the server": len(sim_book),
        }

        latencies = sorted(latency for latency, _, _ in results)
        failures = [(status, detail) for _, status, detail in results if status != 201]
        outcome.update(
            {
                "elapsed": elapsed,
                "created": len(results) - len(failures),
                "rate": (len(results) - len(failures)) / elapsed if elapsed else 0.0,
                "p50": percentile(latencies, 50),
                "p95": percentile(latencies, 95),
                "p99": percentile(latencies, 99),
                "max": latencies[-1] if latencies else None,
                "errors": len(failures),
                "error_samples": failures[:5],
                "postgres": server_version(database_url),
                "gunicorn": " ".join(web.command[3:]).replace(f":{web_port}", ":PORT"),
            }
        )
        if failures:
            outcome["web_log_tail"] = web.log_path.read_text(errors="replace")[-2000:]
            outcome["sim_log_tail"] = sim.log_path.read_text(errors="replace")[-2000:]
    return outcome


# Report ------------------------------------------------------------------------------------------


def fmt_ms(value):
    return f"{value:.1f}" if value is not None else "n/a"


def machine():
    memory = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1])
        memory = f", {kb / 1024 / 1024:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores{memory}, {platform.system()} {platform.machine()}"


def others_share(outcome):
    machine_cpu = outcome["cpu"].get("_machine")
    if not machine_cpu or not machine_cpu["busy"]:
        return "-"
    return f"{100 * outcome['cpu']['everything else on the machine'] / machine_cpu['busy']:.0f} %"


def print_report(args, outcomes):
    first = outcomes[0]
    print()
    print("Settings")
    settings = {
        "date": date.today().isoformat(),
        "machine": machine(),
        "python / PostgreSQL": f"{platform.python_version()} / {first['postgres']}",
        "gunicorn": first["gunicorn"],
        "simulator": f"flask mt-sim (werkzeug, threaded), book in {args.sim_database}",
        "request": f"POST {PATH}, Demo Standard (MT5), leverage {LEVERAGE}, USD, as the demo client",
        "client": "threads, one keep-alive http.client connection each, no retries",
    }
    for key, value in settings.items():
        print(f"  {key}: {value}")
    print()
    print(
        f"{'conc.':>5}  {'accounts':>8}  {'seconds':>7}  {'acc/s':>7}  {'p50 ms':>7}  {'p95 ms':>7}  "
        f"{'p99 ms':>7}  {'max ms':>7}  {'errors':>6}  {'load':>5}  others"
    )
    for o in outcomes:
        load = f"{o['load_before']:.2f}" if o.get("load_before") is not None else "-"
        print(
            f"{o['concurrency']:>5}  {o['created']:>8}  {o['elapsed']:>7.1f}  {o['rate']:>7.1f}  "
            f"{fmt_ms(o['p50']):>7}  {fmt_ms(o['p95']):>7}  {fmt_ms(o['p99']):>7}  {fmt_ms(o['max']):>7}  "
            f"{o['errors']:>6}  {load:>5}  {others_share(o)}"
        )
    print("  load: 1-minute load average when the run started; others: share of the machine's busy CPU")
    print("  used by processes that are not the bench's during the run (high: a disturbed run)")
    if args.rounds > 1:
        print()
        print("median of rounds")
        for level in args.levels:
            runs = [o for o in outcomes if o["concurrency"] == level]
            rate = statistics.median(o["rate"] for o in runs)
            p50 = statistics.median(o["p50"] for o in runs)
            p99 = statistics.median(o["p99"] for o in runs)
            rates = ", ".join(f"{o['rate']:.1f}" for o in runs)
            print(f"  concurrency {level}: {rate:.1f} accounts/s ({rates}), p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    for o in outcomes:
        print()
        print(f"concurrency {o['concurrency']}: CPU seconds during the run (per account in ms)")
        for key, value in o["cpu"].items():
            if key == "_machine":
                continue
            print(f"  {key:<42} {value:7.1f} s  {1000 * value / max(1, o['created']):6.1f} ms")
        if "_machine" in o["cpu"]:
            m = o["cpu"]["_machine"]
            print(
                f"  {'whole machine busy':<42} {m['busy']:7.1f} s  ({m['cores_busy']:.2f} cores, {m['percent']:.0f} %)"
            )
        print(f"  checks: {o['checked']}")
        for problem in o["problems"]:
            print(f"  CHECK FAILED: {problem}")
        for status, detail in o["error_samples"]:
            print(f"  error: {status} {detail}")
        if o.get("web_log_tail"):
            print("  web log (end):\n" + o["web_log_tail"])
            print("  simulator log (end):\n" + o["sim_log_tail"])


def main(argv=None):
    args = parse_args(argv)
    # A plain kill still stops the servers and drops the databases (the ExitStack unwinds).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    outcomes = []
    for number in range(1, args.rounds + 1):
        for concurrency in args.levels:
            if args.rounds > 1:
                print(f"round {number} of {args.rounds}", flush=True)
            outcomes.append(run(args, concurrency))
    print_report(args, outcomes)
    failed = any(o["errors"] or o["problems"] for o in outcomes)
    if failed:
        print("\nsome requests or checks failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
