"""Sync ingestion rate: deals per second from the MT simulator into PostgreSQL.

    python -m bench.sync_rate [--accounts 100] [--trades 1000] [--hours 24]
                              [--admin-url URL] [--keep-database]

1. Creates a PostgreSQL database for the CRM and one for the simulator, starts the
   simulator as the Procfile's `sim` line does (`flask mt-sim`), runs `flask db upgrade`
   and `flask seed-demo` (the demo MT5 servers are the simulator's).
2. Opens `--accounts` demo accounts as the demo client through the API (in process,
   Flask's test client; each one a `user/add` on the simulator), then syncs the demo
   server once (not timed): the accounts' history is empty, the watermark is now.
3. Writes `--trades` closed trades per account straight into the simulator's book with
   set-based SQL, shaped as the simulator's own trades are (an opening and a closing
   order, an `in` and an `out` deal per trade), spread over the next `--hours` of the
   simulator's clock, and moves that clock on past them.
4. Times one sync of the server (`workers.sync.sync_trading_server`, the sync job's
   body, in this process): every deal pulled through the MT5 Web API adapter (login
   batches, time windows with overlap), upserted into `synced_deals`, the closing deals
   turned into `closed_positions`, history orders, positions, pending orders, figures.
5. Checks nothing was missed or doubled (deals synced = deals written; closed positions
   = trades), prints deals/s, then drops both databases and stops the simulator.
"""

import argparse
import os
import secrets
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, text

from bench.auth_get import free_port, scratch_database
from bench.demo_accounts import ACCOUNT_TYPE, LEVERAGE, TRADING_PASSWORD, Process, flask_command
from bench.reports_latency import load_average

SYMBOL = "EURUSD"
LOT_EXT = 100_000_000  # the simulator's volume unit: 1/100,000,000 lot


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--admin-url", default=os.environ.get("BENCH_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
    )
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--trades", type=int, default=1000, help="closed trades per account (two deals each)")
    parser.add_argument("--hours", type=int, default=24, help="simulated hours the trades are spread over")
    parser.add_argument("--keep-database", action="store_true")
    return parser.parse_args(argv)


def environment(database_url, simulator_url, sim_database_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "SQLALCHEMY_", "MT_SIM", "REDIS_URL"))}
    env.update(
        {
            "APP_ENV": "production",
            "DATABASE_URL": database_url,
            "SECRET_KEY": secrets.token_urlsafe(48),
            "JWT_SECRET_KEY": secrets.token_urlsafe(48),
            "JWT_ACCESS_MINUTES": "120",
            "MT_SIMULATOR_URL": simulator_url,
            "MT_SIM_DATABASE_URL": sim_database_url,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def open_accounts(app, count):
    """Demo accounts of the demo client through the API; returns their logins."""
    from crm_app.demo import DEMO_CLIENT, DEMO_PASSWORD

    client = app.test_client()
    answer = client.post("/api/v1/auth/login", json={"email": DEMO_CLIENT, "password": DEMO_PASSWORD})
    headers = {"Authorization": f"Bearer {answer.get_json()['token']}"}
    types = client.get("/api/v1/client/trading-account-types?trading_platform=MT5&size=200", headers=headers)
    type_id = next(row["id"] for row in types.get_json()["list"] if row["name"] == ACCOUNT_TYPE)
    body = {
        "currency": "USD",
        "is_demo": True,
        "leverage": LEVERAGE,
        "password": TRADING_PASSWORD,
        "trading_account_type_id": type_id,
        "trading_platform": "MT5",
    }
    accounts = []
    for _ in range(count):
        answer = client.post("/api/v1/client/trading-accounts", json=body, headers=headers)
        if answer.status_code != 201:
            sys.exit(f"opening an account: {answer.status_code} {answer.get_json()}")
        accounts.append(answer.get_json()["id"])
    return accounts


def write_trades(sim_database_url, server_key, logins, trades, start, hours):
    """`trades` closed trades per login, set-based, as the simulator books them."""
    from crm_app.integrations.trading.simulator import book
    from crm_app.integrations.trading.simulator import db as simdb
    from crm_app.integrations.trading.simulator.wire import (
        DEAL_BUY,
        DEAL_SELL,
        ENTRY_IN,
        ENTRY_OUT,
        OP_BUY,
        OP_SELL,
        STATE_FILLED,
    )

    engine = create_engine(simdb.normalise_url(sim_database_url))
    try:
        with engine.begin() as conn:
            server = conn.execute(simdb.servers.select().where(simdb.servers.c.key == server_key)).one()
            first = book.server_seconds(server, start)
            span = hours * 3600
            order_base = conn.execute(text("SELECT coalesce(max(ticket), 0) + 1000 FROM mtsim_orders")).scalar()
            deal_base = conn.execute(text("SELECT coalesce(max(ticket), 0) + 1000 FROM mtsim_deals")).scalar()
            params = {
                "server": server_key,
                "logins": list(logins),
                "trades": trades,
                "first": first,
                "span": span,
                "order_base": order_base,
                "deal_base": deal_base,
                "lot": LOT_EXT,
                "symbol": SYMBOL,
            }
            # One row per trade: its number, login, side, times (server seconds) and prices.
            conn.execute(
                text(
                    """
                    CREATE TEMP TABLE bench_trades ON COMMIT DROP AS
                    SELECT row_number() OVER () - 1 AS n, login, (t % 2) AS side,
                           :first + ((t * :span) / :trades)::bigint AS opened,
                           :first + ((t * :span) / :trades)::bigint + 30 + (t % 600) AS closed,
                           round((1.08 + (t % 500) / 10000.0)::numeric, 5) AS open_price,
                           round((1.08 + ((t + 7) % 500) / 10000.0)::numeric, 5) AS close_price
                    FROM unnest(CAST(:logins AS bigint[])) AS login, generate_series(0, :trades - 1) AS t
                    """
                ),
                params,
            )
            orders = simdb.orders.name
            deals = simdb.deals.name
            conn.execute(
                text(
                    f"""
                    INSERT INTO {orders} (ticket, server_key, login, symbol, type, state, reason, time_setup,
                        time_done, volume_initial_ext, volume_current_ext, price_order, price_trigger,
                        price_current, price_sl, price_tp, position_id, comment, is_open)
                    SELECT :order_base + 2 * n + leg, :server, login, :symbol,
                           CASE WHEN (side + leg) % 2 = 0 THEN {OP_BUY} ELSE {OP_SELL} END, {STATE_FILLED}, 0,
                           CASE WHEN leg = 0 THEN opened ELSE closed END,
                           CASE WHEN leg = 0 THEN opened ELSE closed END,
                           :lot, 0,
                           CASE WHEN leg = 0 THEN open_price ELSE close_price END, 0,
                           CASE WHEN leg = 0 THEN open_price ELSE close_price END, 0, 0,
                           :order_base + 2 * n, '', false
                    FROM bench_trades, (VALUES (0), (1)) AS legs(leg)
                    """  # noqa: S608 - table names and integer constants of our own
                ),
                params,
            )
            conn.execute(
                text(
                    f"""
                    INSERT INTO {deals} (ticket, server_key, login, time, time_msc, action, entry, reason, symbol,
                        volume_ext, price, price_position, price_sl, price_tp, profit, commission, storage,
                        position_id, order_ticket, comment)
                    SELECT :deal_base + 2 * n + leg, :server, login,
                           CASE WHEN leg = 0 THEN opened ELSE closed END,
                           (CASE WHEN leg = 0 THEN opened ELSE closed END) * 1000,
                           CASE WHEN (side + leg) % 2 = 0 THEN {DEAL_BUY} ELSE {DEAL_SELL} END,
                           CASE WHEN leg = 0 THEN {ENTRY_IN} ELSE {ENTRY_OUT} END, 0, :symbol, :lot,
                           CASE WHEN leg = 0 THEN open_price ELSE close_price END, open_price, 0, 0,
                           CASE WHEN leg = 0 THEN 0
                                ELSE round((close_price - open_price) * 100000 * (1 - 2 * side), 2) END,
                           0, 0, :order_base + 2 * n, :order_base + 2 * n + leg, ''
                    FROM bench_trades, (VALUES (0), (1)) AS legs(leg)
                    """  # noqa: S608
                ),
                params,
            )
            for table in (orders, deals):
                # The simulator's own inserts carry on after the tickets written here.
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'ticket'), (SELECT max(ticket) FROM {table}))"  # noqa: S608
                    )
                )
            written = conn.execute(
                text(f"SELECT count(*) FROM {deals} WHERE ticket >= :base"),  # noqa: S608
                {"base": deal_base},
            ).scalar()
    finally:
        engine.dispose()
    return written


def table_count(db, table, server_id):
    return db.session.execute(text(f"SELECT count(*) FROM {table} WHERE server_id = :id"), {"id": server_id}).scalar()  # noqa: S608


def main(argv=None):
    args = parse_args(argv)
    with ExitStack() as stack:
        tmp_dir = stack.enter_context(tempfile.TemporaryDirectory())
        database_url = stack.enter_context(scratch_database(args.admin_url, keep=args.keep_database))
        sim_database_url = stack.enter_context(scratch_database(args.admin_url, keep=args.keep_database))
        sim_port = free_port()
        simulator_url = f"http://127.0.0.1:{sim_port}"
        env = environment(database_url, simulator_url, sim_database_url)
        sim = Process(
            "simulator",
            [sys.executable, "-m", "flask", "mt-sim", "--host", "127.0.0.1", "--port", str(sim_port)],
            {**env, "MT_SIM_PORT": str(sim_port)},
            tmp_dir,
            "/sim/health",
        )
        stack.callback(sim.stop)
        sim.start(sim_port)
        flask_command(env, "db", "upgrade")
        flask_command({**env, "APP_ENV": "development"}, "seed-demo")  # a throwaway database: the published demo logins

        os.environ.update(env)
        from crm_app import create_app
        from crm_app.extensions import db
        from crm_app.trading.models import TradingAccount, TradingServer
        from workers.sync import sync_trading_server

        app = create_app()
        started = time.perf_counter()
        account_ids = open_accounts(app, args.accounts)  # requests: each with an app context of its own
        with app.app_context():
            accounts = [db.session.get(TradingAccount, account_id) for account_id in account_ids]
            server = db.session.get(TradingServer, accounts[0].server_id)
            server_id, server_key = server.id, server.base_url.rstrip("/").rsplit("/", 1)[1]
            logins = [account.login for account in accounts]
            print(f"{len(logins)} demo accounts opened in {time.perf_counter() - started:.1f} s", flush=True)
            first = sync_trading_server(server_id)
            print(f"first sync (empty history): {first['status']}", flush=True)
            db.session.remove()

            import requests  # the simulator is another process: its control routes over HTTP

            now = datetime.fromisoformat(requests.get(f"{simulator_url}/sim/clock", timeout=10).json()["now"])
            started = time.perf_counter()
            written = write_trades(
                sim_database_url, server_key, logins, args.trades, now + timedelta(minutes=1), args.hours
            )
            minutes = args.hours * 60 + 30
            requests.post(
                f"{simulator_url}/sim/clock", json={"advance_minutes": minutes}, timeout=10
            ).raise_for_status()
            print(
                f"{written:,} deals ({written // 2:,} closed trades) written to the simulator in "
                f"{time.perf_counter() - started:.1f} s; its clock moved on {minutes} minutes",
                flush=True,
            )

            deals_before = table_count(db, "synced_deals", server_id)
            closed_before = table_count(db, "closed_positions", server_id)
            load_before = load_average()
            started = time.perf_counter()
            result = sync_trading_server(server_id)
            elapsed = time.perf_counter() - started
            load_after = load_average()
            deals = table_count(db, "synced_deals", server_id) - deals_before
            closed = table_count(db, "closed_positions", server_id) - closed_before
            again = sync_trading_server(server_id)  # nothing new: nothing doubled
            doubled = table_count(db, "synced_deals", server_id) - deals_before - deals

        print(f"\nsync: {result['status']}; {deals:,} deals and {closed:,} closed positions in {elapsed:.1f} s")
        print(f"  counts reported by the run: {result.get('counts')}")
        print(f"  rate: {deals / elapsed:,.0f} deals/s")
        print(
            f"  missed: {written - deals}; closed positions = trades: {closed == written // 2}; "
            f"a second run ({again['status']}) added {doubled} deals"
        )
        print(f"  load average before {load_before}, after {load_after}; started {datetime.now(UTC):%Y-%m-%d}")
        if deals != written or doubled or closed != written // 2:
            sys.exit(1)


if __name__ == "__main__":
    main()
