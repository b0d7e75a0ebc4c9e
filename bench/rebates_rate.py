"""Rebates calculated per second: the engine over N closing deals under a five-level IB tree.

    python -m bench.rebates_rate [--deals 1000000] [--admin-url URL] [--batches-per-call 50]
                                 [--batch-size N] [--profile] [--keep-database]

1. Creates a PostgreSQL database of its own (through the admin URL) and runs the release
   step (`flask db upgrade`) against it in a subprocess, as a production host would.
2. Fills it with set-based SQL (INSERT ... SELECT generate_series): an IB tree five
   levels deep (closure-table rows with their depths), clients under it (most under the
   deepest IBs), a trading server, two account types, one trading account per client and
   per bottom-level IB (their own trades earn them nothing), a per-lot rule per account
   type with amounts for five levels and a 60 s minimum holding time, and N closed
   positions (unique closing deal tickets, usual symbols and volumes, about 5% held
   under 60 s). Then ANALYZE.
3. In-process (`crm_app.create_app()`, app context), calls `calculate_rebates()` until it
   reports no deal left, and prints deals/s, rebate rows written and peak memory (RSS).
   It also reads the CPU time used by this process and by the database's server
   processes (from /proc, when the server runs on this machine): on a shared machine the
   wall-clock rate depends on the neighbours, deals per CPU second much less.
   With `--profile`, the first batch is run under cProfile first (not timed) and its
   top functions are printed.
4. Drops the database, whatever happened.
"""

import argparse
import cProfile
import io
import os
import platform
import pstats
import resource
import secrets
import subprocess
import sys
import time
from contextlib import closing
from datetime import date

import psycopg

from bench.auth_get import DEFAULT_ADMIN_URL, PROJECT_ROOT, libpq_url, scratch_database, server_version

TARGET = 5000
FANOUT = 4  # children per IB
TOP_IBS = 5
LEVELS = 5
CLIENTS = 20000
SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD", "AUDUSD", "USDCAD", "USDCHF", "NZDUSD", "US30", "BTCUSD")
LEVEL_AMOUNTS = '["8", "4", "2", "1", "0.5"]'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_DATABASE_ADMIN_URL", DEFAULT_ADMIN_URL))
    parser.add_argument("--deals", type=int, default=1_000_000, help="closed positions to rebate")
    parser.add_argument("--batches-per-call", type=int, default=50, help="max_batches of each engine call")
    parser.add_argument("--batch-size", type=int, default=None, help="closing deals per batch (engine default)")
    parser.add_argument("--profile", action="store_true", help="profile the first batch (not timed)")
    parser.add_argument("--keep-database", action="store_true", help="do not drop the database at the end")
    return parser.parse_args(argv)


def release_env(database_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "SQLALCHEMY_"))}
    env.update(
        {
            "APP_ENV": "production",
            "DATABASE_URL": database_url,
            "SECRET_KEY": secrets.token_hex(32),
            "JWT_SECRET_KEY": secrets.token_hex(32),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("REDIS_URL", None)
    return env


def flask_command(env, *command):
    result = subprocess.run(
        [sys.executable, "-m", "flask", *command], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"flask {' '.join(command)} failed:\n{result.stdout}{result.stderr}")


# Data -----------------------------------------------------------------------


def level_ranges():
    """[(first id, count)] of the IBs of levels 1..LEVELS (ids from 1, level by level)."""
    ranges, first, count = [], 1, TOP_IBS
    for _ in range(LEVELS):
        ranges.append((first, count))
        first += count
        count *= FANOUT
    return ranges


USER_COLUMNS = (
    "id, email, email_key, password_hash, user_type, status, first_name, last_name, parent_ib_id,"
    " referral_code, token_version, language, created_at, updated_at"
)


def fill(conn, deals):
    ranges = level_ranges()
    ib_count = sum(count for _, count in ranges)
    for level, (first, count) in enumerate(ranges, start=1):
        parent = "NULL" if level == 1 else f"{ranges[level - 2][0]} + (g - {first}) / {FANOUT}"
        conn.execute(
            f"""
            INSERT INTO users ({USER_COLUMNS})
            SELECT g, 'ib' || g || '@bench.example', 'ib' || g || '@bench.example', 'x', 'ib', 'enabled',
                   'IB', 'L{level}-' || g, {parent}, 'R' || g, 0, 'en', now(), now()
            FROM generate_series({first}, {first + count - 1}) g
            """,  # noqa: S608
        )
    # Clients: 4 in 5 under a bottom-level IB, the others under a level-3 IB.
    bottom_first, bottom_count = ranges[-1]
    mid_first, mid_count = ranges[2]
    first_client = ib_count + 1
    conn.execute(
        f"""
        INSERT INTO users ({USER_COLUMNS})
        SELECT g, 'c' || g || '@bench.example', 'c' || g || '@bench.example', 'x', 'client', 'enabled',
               'Client', 'C' || g,
               CASE WHEN g % 5 = 0 THEN {mid_first} + g % {mid_count} ELSE {bottom_first} + g % {bottom_count} END,
               NULL, 0, 'en', now(), now()
        FROM generate_series({first_client}, {first_client + CLIENTS - 1}) g
        """,  # noqa: S608
    )
    conn.execute("SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT max(id) FROM users))")
    conn.execute(
        """
        INSERT INTO ib_tree_paths (ancestor_id, descendant_id, depth)
        WITH RECURSIVE up(ancestor_id, descendant_id, depth) AS (
            SELECT id, id, 0 FROM users
            UNION ALL
            SELECT u.parent_ib_id, up.descendant_id, up.depth + 1
            FROM up JOIN users u ON u.id = up.ancestor_id
            WHERE u.parent_ib_id IS NOT NULL
        )
        SELECT ancestor_id, descendant_id, depth FROM up
        """
    )
    server_id = conn.execute(
        """
        INSERT INTO trading_servers (name, platform, is_demo, connector, base_url, manager_login,
            manager_password_encrypted, timezone, next_login, last_login, enabled, created_at, updated_at)
        VALUES ('Bench-Live', 'MT5', false, 'mt5_webapi', 'http://127.0.0.1:1', 1000, 'x', 'UTC',
            100000, 999999999, true, now(), now())
        RETURNING id
        """
    ).fetchone()[0]
    type_ids = [
        conn.execute(
            """
            INSERT INTO trading_account_types (name, server_id, mt_group, leverage_options, fund_direction,
                currency, allowed_user_types, enabled, sort_order, created_at)
            VALUES (%s, %s, %s, '[100, 200, 500]', 'normal', 'USD', '["client", "ib"]', true, 0, now())
            RETURNING id
            """,
            (name, server_id, group),
        ).fetchone()[0]
        for name, group in (("Standard", "real\\standard"), ("ECN", "real\\ecn"))
    ]
    # One account per client, and one per bottom-level IB; login = 100000 + user id.
    conn.execute(
        f"""
        INSERT INTO trading_accounts (user_id, server_id, account_type_id, login, leverage, currency, is_demo,
            status, balance, credit, equity, margin, margin_free, margin_level, created_at)
        SELECT u.id, {server_id}, CASE WHEN u.id % 3 = 0 THEN {type_ids[1]} ELSE {type_ids[0]} END,
               100000 + u.id, 500, 'USD', false, 'active', 1000, 0, 1000, 0, 1000, 0, now()
        FROM users u
        WHERE u.user_type = 'client' OR u.id >= {bottom_first}
        """,  # noqa: S608
    )
    for type_id in type_ids:
        conn.execute(
            f"""
            INSERT INTO rebate_rules (name, account_type_id, mt_group_pattern, symbol_pattern, mode, level_amounts,
                upline_difference_only, min_holding_seconds, priority, enabled, valid_from, valid_to, created_at)
            VALUES ('bench per lot', {type_id}, NULL, '*', 'per_lot', '{LEVEL_AMOUNTS}', false, 60, 0, true,
                    '2000-01-01', NULL, now())
            """,  # noqa: S608
        )
    conn.execute("UPDATE rebate_rules SET rule_key = id")
    accounts = conn.execute("SELECT count(*), min(id) FROM trading_accounts").fetchone()
    symbols = "ARRAY[" + ", ".join(f"'{s}'" for s in SYMBOLS) + "]"
    # Closing deals spread over the last 30 days; 1 in 20 held under 60 s, the rest 1 min to ~2 days.
    conn.execute(
        f"""
        INSERT INTO closed_positions (server_id, close_deal_ticket, close_order, position_id, login,
            trading_account_id, symbol, side, volume, open_price, open_time, close_price, close_time, profit,
            commission, swap, sl, tp, open_deal_tickets, synced_at)
        SELECT {server_id}, 50000000 + 2 * g, 40000000 + 2 * g, 30000000 + g, a.login, a.id,
               ({symbols})[1 + (g * 7) % {len(SYMBOLS)}], CASE WHEN g % 2 = 0 THEN 'buy' ELSE 'sell' END,
               v.volume, 1.1, t.close_time - t.held, 1.1005, t.close_time,
               round((random() * 200 - 100)::numeric, 2), -round(v.volume * 7, 2), 0, 0, 0,
               ('[' || (50000000 + 2 * g - 1) || ']')::json, t.close_time
        FROM generate_series(CAST(1 AS bigint), {deals}) g
        JOIN trading_accounts a ON a.id = {accounts[1]} + (g * 7919) % {accounts[0]}
        CROSS JOIN LATERAL (
            -- From g, not random(): an uncorrelated subquery would be evaluated once for all rows.
            SELECT round(0.01 + 0.01 * ((g * 7907) % 200), 2) AS volume
        ) v
        CROSS JOIN LATERAL (
            SELECT timestamp '2025-01-01' + (g * interval '2.5 second') AS close_time,
                   CASE WHEN g % 20 = 0 THEN (g % 59) * interval '1 second'
                        ELSE (60 + (g * 37) % 172800) * interval '1 second' END AS held
        ) t
        ORDER BY g
        """,  # noqa: S608
    )
    return {"ibs": ib_count, "clients": CLIENTS, "accounts": accounts[0], "server_id": server_id}


# Engine ---------------------------------------------------------------------


def backend_cpu_seconds(conn, database):
    """{pid: CPU seconds} of the server processes serving `database` (empty if not readable)."""
    pids = [
        row[0]
        for row in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (database,)
        )
    ]
    answer = {}
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        answer[pid] = (int(fields[11]) + int(fields[12])) / tick
    return answer


def own_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_engine(args, database_url):
    os.environ.update(release_env(database_url))
    from crm_app import create_app
    from crm_app.extensions import db
    from crm_app.rebates import services

    app = create_app()
    result = {"deals": 0, "rebates": 0, "calls": 0, "profile": None}
    database = database_url.rsplit("/", 1)[1]
    watcher = psycopg.connect(libpq_url(database_url), autocommit=True)
    with app.app_context(), closing(watcher):
        db.session.execute(db.text("SELECT 1"))  # the engine's connection, so its server process is counted
        db.session.commit()
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            first = services.calculate_rebates(batch_size=args.batch_size, max_batches=1)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(35)
            out.write("\n--- by own time ---\n")
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
            result["profile"] = out.getvalue()
            result["profiled"] = first
        rss_before = peak_rss_mb()
        backend_before, own_before = backend_cpu_seconds(watcher, database), own_cpu_seconds()
        started = time.perf_counter()
        while True:
            counts = services.calculate_rebates(batch_size=args.batch_size, max_batches=args.batches_per_call)
            result["calls"] += 1
            result["deals"] += counts["deals"]
            result["rebates"] += counts["rebates"]
            elapsed = time.perf_counter() - started
            if counts["deals"]:
                print(
                    f"  {result['deals']:>9} deals, {result['rebates']:>9} rebates, {elapsed:7.1f} s, "
                    f"{result['deals'] / elapsed:7.0f} deals/s",
                    flush=True,
                )
            else:
                break
        result["seconds"] = time.perf_counter() - started
        backend_after = backend_cpu_seconds(watcher, database)
        result["own_cpu"] = own_cpu_seconds() - own_before
        result["backend_cpu"] = (
            sum(seconds - backend_before.get(pid, 0.0) for pid, seconds in backend_after.items())
            if backend_after
            else None
        )
        result["rss_before"] = rss_before
        result["rss_peak"] = peak_rss_mb()
        db.session.remove()
    return result


def services_batch_size():
    from crm_app.rebates.services import PG_BATCH_SIZE

    return PG_BATCH_SIZE


def main(argv=None):
    args = parse_args(argv)
    with scratch_database(args.admin_url, keep=args.keep_database) as database_url:
        print("release: flask db upgrade", flush=True)
        flask_command(release_env(database_url), "db", "upgrade")
        print(f"filling: IB tree, clients, accounts, rules, {args.deals} closed positions", flush=True)
        started = time.perf_counter()
        with closing(psycopg.connect(libpq_url(database_url), autocommit=True)) as conn:
            shape = fill(conn, args.deals)
            conn.execute("ANALYZE")
            paths = conn.execute("SELECT count(*), max(depth) FROM ib_tree_paths").fetchone()
        fill_seconds = time.perf_counter() - started
        print(f"filled in {fill_seconds:.0f} s; engine:", flush=True)
        result = run_engine(args, database_url)
        with closing(psycopg.connect(libpq_url(database_url))) as conn:
            by_reason = conn.execute(
                "SELECT coalesce(reason, 'paid'), count(*), sum(amount) FROM rebates GROUP BY 1 ORDER BY 1"
            ).fetchall()
            total_rows = conn.execute("SELECT count(*) FROM rebates").fetchone()[0]
        version = server_version(database_url)

    if result["profile"]:
        print("\nProfile of the first batch (not timed):")
        print(result["profile"])
    rate = result["deals"] / result["seconds"] if result["seconds"] else 0.0
    print()
    print("Settings")
    print(f"  date: {date.today().isoformat()}")
    print(f"  machine: {os.cpu_count()} cores, {platform.system()} {platform.machine()}")
    print(f"  python / PostgreSQL: {platform.python_version()} / {version}")
    print(
        f"  data: {shape['ibs']} IBs on {LEVELS} levels ({TOP_IBS} at the top, {FANOUT} children each), "
        f"{shape['clients']} clients, {shape['accounts']} accounts, {paths[0]} closure rows (max depth {paths[1]}), "
        f"{args.deals} closing deals (1 in 20 held < 60 s)"
    )
    batch = args.batch_size or services_batch_size()
    print(f"  engine: calculate_rebates(batch_size={batch}, max_batches={args.batches_per_call}) until no deal is left")
    print()
    print(f"deals rebated (timed): {result['deals']} in {result['seconds']:.1f} s, {result['calls']} calls")
    print(f"rebate rows written (timed): {result['rebates']} ({total_rows} in the table)")
    for reason, count, amount in by_reason:
        print(f"  {reason}: {count} rows, {amount}")
    print(f"peak RSS: {result['rss_peak']:.0f} MB (before the timed run: {result['rss_before']:.0f} MB)")
    if result["backend_cpu"] is not None:
        cpu = result["own_cpu"] + result["backend_cpu"]
        print(
            f"CPU: {result['own_cpu']:.1f} s here + {result['backend_cpu']:.1f} s in PostgreSQL = {cpu:.1f} s "
            f"for {result['seconds']:.1f} s of wall time: {result['deals'] / cpu:.0f} deals per CPU second"
        )
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    verdict = "meets" if rate >= TARGET else "misses"
    print(f"rate: {rate:.0f} deals/s ({verdict} the {TARGET} deals/s target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
