"""Deposit approvals per second, end to end: API (gunicorn), review queue, balance
operation through the MT5 Web API adapter, the MT simulator (its own process).

    python -m bench.deposit_approvals --deposits 300 --concurrency 4

Builds its own database, runs the release step and `flask seed-demo`, starts the
simulator and gunicorn as the Procfile does, prepares N submitted deposits through
the API (not timed), then approves them from `--concurrency` admin sessions at once
(timed) and checks that the trading account's balance on the simulator equals the
sum credited: every approval paid once.
"""

import argparse
import io
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

import requests

from bench.auth_get import free_port, scratch_database

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEMO_CLIENT_EMAIL = "client@demo.local"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deposits", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn --workers")
    parser.add_argument(
        "--admin-url", default=os.environ.get("BENCH_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
    )
    return parser.parse_args(argv)


def wait_until_up(url, process, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited")
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {seconds} s")


def record_approved_kyc(database_url, email):
    """Deposits go into live accounts only, and those need approved KYC. The bench measures
    approvals of deposits, not the KYC review: the demo client's approved KYC is recorded here."""
    import json
    from contextlib import closing

    import psycopg

    from bench.auth_get import libpq_url

    identity = {"first_name": "Chris", "last_name": "Client", "country": "GB"}
    with closing(psycopg.connect(libpq_url(database_url))) as conn:
        conn.execute(
            "INSERT INTO kyc_profiles (user_id, status, apply_status, data, completed_modules, kyc_way, "
            "submitted_at, approved_at, created_at, updated_at) "
            "SELECT id, 'approved', 'approved', %s, %s, 'manual', now() AT TIME ZONE 'utc', "
            "now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc' FROM users WHERE email = %s",
            (json.dumps({"identity": identity}), json.dumps(["identity"]), email),
        )
        conn.commit()


def run(args):
    with scratch_database(args.admin_url) as database_url, tempfile.TemporaryDirectory() as tmp:
        web_port, sim_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "REDIS_URL"))}
        env.update(
            {
                "APP_ENV": "production",
                "DATABASE_URL": database_url,
                "PORT": str(web_port),
                "SECRET_KEY": secrets.token_hex(32),
                "JWT_SECRET_KEY": secrets.token_hex(32),
                "JWT_ACCESS_MINUTES": "120",
                "MT_SIMULATOR_URL": f"http://127.0.0.1:{sim_port}",
                "MT_SIM_DATABASE_URL": f"sqlite:///{tmp}/mt_sim.db",
                # One client sends every deposit: the per-user money throttle would refuse most.
                "MONEY_THROTTLE_MAX_REQUESTS": "1000000",
            }
        )
        flask = [sys.executable, "-m", "flask"]
        subprocess.run([*flask, "db", "upgrade"], cwd=PROJECT_ROOT, env=env, check=True, capture_output=True)
        # A throwaway database: seeded as a development one, with the published demo logins.
        seed_env = {**env, "APP_ENV": "development"}
        subprocess.run([*flask, "seed-demo"], cwd=PROJECT_ROOT, env=seed_env, check=True, capture_output=True)
        record_approved_kyc(database_url, DEMO_CLIENT_EMAIL)
        logs = open(Path(tmp) / "servers.log", "wb")  # noqa: SIM115 - closed with the servers
        sim = subprocess.Popen(
            [*flask, "mt-sim", "--host", "127.0.0.1", "--port", str(sim_port)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=logs,
            stderr=subprocess.STDOUT,
        )
        web = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "wsgi:app",
                "--bind",
                f"127.0.0.1:{web_port}",
                "--workers",
                str(args.workers),
                "--worker-class",
                "sync",
                "--timeout",
                "30",
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=logs,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_up(f"http://127.0.0.1:{sim_port}/sim/health", sim)
            wait_until_up(f"http://127.0.0.1:{web_port}/healthz", web)
            return measure(args, f"http://127.0.0.1:{web_port}")
        finally:
            for process in (web, sim):
                process.terminate()
                process.wait(20)
            logs.close()


def login(base, email, password):
    answer = requests.post(f"{base}/api/v1/auth/login", json={"email": email, "password": password}, timeout=30)
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def measure(args, base):
    client = login(base, DEMO_CLIENT_EMAIL, "Demo-Harbor-2026")
    admin = login(base, "admin@demo.local", "Admin-Lighthouse-71")
    types = requests.get(
        f"{base}/api/v1/client/trading-account-types?trading_platform=MT5", headers=client, timeout=30
    ).json()["list"]
    live_type = next(t for t in types if not t["is_demo"] and t["fund_direction"] == "normal")
    applied = requests.post(
        f"{base}/api/v1/client/account-applications",
        headers=client,
        timeout=30,
        json={
            "currency": "USD",
            "leverage": live_type["leverage_options"][0]["value"],
            "password": "Trade1234x",
            "trading_account_type_id": live_type["id"],
            "trading_platform": "MT5",
        },
    )
    applied.raise_for_status()
    application = requests.get(
        f"{base}/api/v1/admin/audits?type=account_application&status=pending", headers=admin, timeout=30
    ).json()["list"][0]
    opened = requests.post(
        f"{base}/api/v1/admin/audits/{application['id']}/approve", headers=admin, json={}, timeout=60
    )
    opened.raise_for_status()
    account = {"id": opened.json()["object"]["trading_account_id"]}
    channels = requests.get(f"{base}/api/v1/client/deposit-channels", headers=client, timeout=30).json()["list"]
    channel = next(c for c in channels if "USD" in c["allowed_currencies"])
    receipt = requests.post(
        f"{base}/api/v1/uploads",
        headers=client,
        timeout=30,
        files={"file": ("receipt.png", io.BytesIO(PNG), "image/png")},
    ).json()["url"]

    amount = Decimal(channel["min_amount"]).max(Decimal("100.00"))
    for _ in range(args.deposits):
        draft = requests.post(
            f"{base}/api/v1/client/deposits",
            headers=client,
            timeout=30,
            json={
                "deposit_amount": f"{amount:.2f}",
                "remittance_id": channel["id"],
                "trading_account_id": account["id"],
            },
        )
        draft.raise_for_status()
        requests.post(
            f"{base}/api/v1/client/deposits/submit",
            headers=client,
            timeout=30,
            json={"order_number": draft.json()["order_number"], "receipt_url": receipt},
        ).raise_for_status()
    items = []
    page = 1
    while len(items) < args.deposits:
        batch = requests.get(
            f"{base}/api/v1/admin/audits?type=deposit&status=pending&size=200&page={page}", headers=admin, timeout=30
        ).json()["list"]
        if not batch:
            break
        items += [item["id"] for item in batch]
        page += 1

    latencies, errors, lock = [], [], threading.Lock()

    def approve(chunk):
        session = requests.Session()
        for item_id in chunk:
            started = time.perf_counter()
            answer = session.post(f"{base}/api/v1/admin/audits/{item_id}/approve", headers=admin, json={}, timeout=60)
            with lock:
                latencies.append(time.perf_counter() - started)
                if answer.status_code != 200 or answer.json()["object"]["status"] != "approved":
                    errors.append(answer.status_code)

    chunks = [items[i :: args.concurrency] for i in range(args.concurrency)]
    threads = [threading.Thread(target=approve, args=(chunk,)) for chunk in chunks]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started

    detail = requests.get(f"{base}/api/v1/client/trading-accounts/{account['id']}", headers=client, timeout=30).json()
    expected, page = Decimal("0"), 1
    while True:
        rows = requests.get(
            f"{base}/api/v1/reports/deposits?status=approved&size=200&page={page}", headers=admin, timeout=30
        ).json()["list"]
        if not rows:
            break
        expected += sum(Decimal(row["amount"]) - Decimal(row["fee"]) for row in rows)
        page += 1
    latencies.sort()
    return {
        "approvals": len(items),
        "seconds": elapsed,
        "per_second": len(items) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000,
        "errors": len(errors),
        "balance_on_server": Decimal(detail["balance"]),
        "expected_balance": expected,
    }


def main(argv=None):
    args = parse_args(argv)
    result = run(args)
    print(
        f"deposit approvals: {result['approvals']} in {result['seconds']:.1f} s = "
        f"{result['per_second']:.1f}/s at concurrency {args.concurrency}, gunicorn --workers {args.workers} sync"
    )
    print(f"latency p50 {result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms; errors {result['errors']}")
    paid_once = result["balance_on_server"] == result["expected_balance"]
    print(
        f"balance on the simulator: {result['balance_on_server']}; approved deposits less fees: "
        f"{result['expected_balance']} (every approval paid once: {paid_once})"
    )
    return 0 if result["errors"] == 0 and paid_once else 1


if __name__ == "__main__":
    sys.exit(main())
