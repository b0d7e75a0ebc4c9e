"""Build a realistic broker book on a migrated database, fast, with set-based SQL.

    python -m bench.book --database-url URL [--seed 0.42] [--scale 1.0]

The schema must exist (`flask db upgrade`). Writes, with `INSERT ... SELECT
generate_series(...)` only:

- 1 admin, an IB tree five levels deep (3 top IBs, then 5 IBs per level, each under an
  IB of the level above), 2,000 clients (most under an IB at any level, some direct),
  and the closure table (`ib_tree_paths`: a depth-0 row per user, one per ancestor);
- 2 live trading servers (MT5, MT4), 2 account types on each, 10,000 trading accounts
  (clients and IBs);
- 1,000,000 closed positions, 100,000 open positions, 50,000 pending orders: random
  symbols, sides, volumes, prices, times over the last year;
- 100,000 deposits, 60,000 withdrawals and 40,000 transfers, each with its review item.

Then VACUUM ANALYZE (the steady state autovacuum reaches on a running database: the
visibility map set, so counts can be answered by index-only scans), and prints the row
counts and the build time. Random values come from
PostgreSQL's `random()` after `setseed`, so one seed gives one book.
"""

import argparse
import time

from sqlalchemy import create_engine, text

TOP_IBS = 3
IBS_PER_LEVEL = 5
IB_LEVELS = 5
CLIENTS = 2_000
ACCOUNTS = 10_000
CLOSED_POSITIONS = 1_000_000
OPEN_POSITIONS = 100_000
PENDING_ORDERS = 50_000
DEPOSITS = 100_000
WITHDRAWALS = 60_000
TRANSFERS = 40_000

SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD", "AUDUSD", "USDCAD", "USDCHF", "NZDUSD", "US30", "BTCUSD")
PENDING_TYPES = ("buy_limit", "sell_limit", "buy_stop", "sell_stop")
TABLES = (
    "users",
    "ib_tree_paths",
    "trading_servers",
    "trading_account_types",
    "trading_accounts",
    "closed_positions",
    "open_positions",
    "pending_orders",
    "deposits",
    "withdrawals",
    "transfers",
    "review_items",
)


def sqlalchemy_url(url):
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def ib_tree():
    """[(id, parent_id, level)] of the IBs; ids from 2 (1 is the admin)."""
    ibs, previous, next_id = [], [], 2
    for level in range(1, IB_LEVELS + 1):
        count = TOP_IBS if level == 1 else IBS_PER_LEVEL
        current = []
        for index in range(count):
            parent = previous[index % len(previous)] if previous else None
            ibs.append((next_id, parent, level))
            current.append(next_id)
            next_id += 1
        previous = current
    return ibs


def _symbol_sql():
    return "(ARRAY[{}])[1 + floor(random() * {})::int]".format(", ".join(f"'{s}'" for s in SYMBOLS), len(SYMBOLS))


def _pending_type_sql():
    return "(ARRAY[{}])[1 + floor(random() * {})::int]".format(
        ", ".join(f"'{s}'" for s in PENDING_TYPES), len(PENDING_TYPES)
    )


def _scaled(count, scale):
    return max(1, int(count * scale))


def steps(scale):
    """(label, SQL, parameters) in order."""
    ibs = ib_tree()
    ib_values = ", ".join(f"({i}, {p if p else 'NULL'}, {lvl})" for i, p, lvl in ibs)
    n_ibs = len(ibs)
    first_client = 2 + n_ibs
    clients = CLIENTS
    accounts = ACCOUNTS
    closed = _scaled(CLOSED_POSITIONS, scale)
    opened = _scaled(OPEN_POSITIONS, scale)
    pending = _scaled(PENDING_ORDERS, scale)
    deposits = _scaled(DEPOSITS, scale)
    withdrawals = _scaled(WITHDRAWALS, scale)
    transfers = _scaled(TRANSFERS, scale)
    symbol = _symbol_sql()
    # Users that hold accounts: the clients and the IBs (ids 2 .. first_client + clients - 1).
    holders = n_ibs + clients
    account_of = f"1 + floor(random() * {accounts})::int"
    return [
        (
            "users",
            f"""
            INSERT INTO users (id, email, email_key, password_hash, user_type, status, first_name, last_name,
                               parent_ib_id, referral_code, token_version, language, created_at, updated_at)
            SELECT 1, 'admin@book.test', 'admin@book.test', '!', 'admin', 'enabled', 'Book', 'Admin',
                   NULL, NULL, 0, 'en', :t0 - interval '2 years', :t0 - interval '2 years'
            UNION ALL
            SELECT v.id, 'ib' || v.id || '@book.test', 'ib' || v.id || '@book.test', '!', 'ib', 'enabled',
                   'Ib' || v.id, 'Level' || v.lvl, v.parent, 'IB' || v.id, 0, 'en',
                   :t0 - interval '2 years' + v.id * interval '1 day', :t0 - interval '1 year'
            FROM (VALUES {ib_values}) AS v(id, parent, lvl)
            UNION ALL
            SELECT {first_client} + g, 'client' || g || '@book.test', 'client' || g || '@book.test', '!', 'client',
                   'enabled', 'Client', 'No' || g,
                   CASE WHEN g % 10 = 0 THEN NULL ELSE 2 + floor(random() * {n_ibs})::int END,
                   NULL, 0, 'en', :t0 - random() * interval '700 days', :t0 - interval '1 day'
            FROM generate_series(0, {clients - 1}) AS g
            """,  # noqa: S608
        ),
        ("users_seq", "SELECT setval('users_id_seq', (SELECT max(id) FROM users))"),
        (
            "ib_tree_paths",
            """
            INSERT INTO ib_tree_paths (ancestor_id, descendant_id, depth)
            WITH RECURSIVE paths(ancestor_id, descendant_id, depth) AS (
                SELECT id, id, 0 FROM users
                UNION ALL
                SELECT u.parent_ib_id, p.descendant_id, p.depth + 1
                FROM paths p JOIN users u ON u.id = p.ancestor_id
                WHERE u.parent_ib_id IS NOT NULL
            )
            SELECT ancestor_id, descendant_id, depth FROM paths
            """,  # noqa: S608
        ),
        (
            "trading_servers",
            """
            INSERT INTO trading_servers (id, name, platform, is_demo, connector, base_url, manager_login,
                                         manager_password_encrypted, timezone, next_login, last_login, enabled,
                                         created_at, updated_at)
            VALUES (1, 'Book-MT5-Live', 'MT5', false, 'mt5_webapi', 'http://mt5.book.test', 1000, '!', 'UTC',
                    5000000, 5999999, true, :t0, :t0),
                   (2, 'Book-MT4-Live', 'MT4', false, 'mt5_webapi', 'http://mt4.book.test', 1000, '!', 'UTC',
                    6000000, 6999999, true, :t0, :t0);
            SELECT setval('trading_servers_id_seq', 2);
            INSERT INTO trading_account_types (id, name, server_id, mt_group, leverage_options, fund_direction,
                                               currency, allowed_user_types, enabled, sort_order, created_at)
            SELECT s * 2 - 1 + k, (ARRAY['Standard', 'ECN'])[k + 1], s, 'real\\book\\' || s || '-' || k,
                   '[100, 200, 500]', 'normal', 'USD', '["client", "ib"]', true, k, :t0
            FROM generate_series(1, 2) AS s, generate_series(0, 1) AS k;
            SELECT setval('trading_account_types_id_seq', 4)
            """,  # noqa: S608
        ),
        (
            "trading_accounts",
            f"""
            INSERT INTO trading_accounts (id, user_id, server_id, account_type_id, login, leverage, currency,
                                          is_demo, status, balance, credit, equity, margin, margin_free,
                                          margin_level, created_at)
            SELECT g, 2 + (g - 1) % {holders}, 1 + g % 2, (1 + g % 2) * 2 - 1 + (g / 2) % 2,
                   (CASE WHEN g % 2 = 0 THEN 5000000 ELSE 6000000 END) + g,
                   (ARRAY[100, 200, 500])[1 + g % 3], 'USD', false, 'active',
                   round((random() * 50000)::numeric, 2), 0, 0, 0, 0, 0, :t0 - random() * interval '600 days'
            FROM generate_series(1, {accounts}) AS g;
            SELECT setval('trading_accounts_id_seq', {accounts})
            """,  # noqa: S608
        ),
        (
            "closed_positions",
            f"""
            INSERT INTO closed_positions (id, server_id, close_deal_ticket, close_order, position_id, login,
                                          trading_account_id, symbol, side, volume, open_price, open_time,
                                          close_price, close_time, profit, commission, swap, sl, tp,
                                          open_deal_tickets, synced_at)
            SELECT s.g, a.server_id, 2 * s.g, 2 * s.g, s.g, a.login, a.id, s.symbol,
                   CASE WHEN s.r < 0.5 THEN 'buy' ELSE 'sell' END, s.volume, s.open_price,
                   s.close_time - random() * interval '3 days',
                   round(s.open_price * (0.99 + random() * 0.02)::numeric, 5),
                   s.close_time, round((random() * 400 - 200)::numeric, 2), round(-(s.volume * 7), 2),
                   round((random() * 4 - 2)::numeric, 2), 0, 0, ('[' || (2 * s.g - 1) || ']')::json, s.close_time
            FROM (
                SELECT g, {account_of} AS account_id, {symbol} AS symbol, random() AS r,
                       round((0.01 + random() * 5)::numeric, 2) AS volume,
                       round((0.5 + random() * 2)::numeric, 5) AS open_price,
                       :t0 - random() * interval '365 days' AS close_time
                FROM generate_series(1, {closed}) AS g
            ) AS s
            JOIN trading_accounts a ON a.id = s.account_id;
            SELECT setval('closed_positions_id_seq', {closed})
            """,  # noqa: S608
        ),
        (
            "open_positions",
            f"""
            INSERT INTO open_positions (id, server_id, ticket, login, trading_account_id, symbol, side, volume,
                                        open_price, open_time, current_price, sl, tp, profit, swap, commission,
                                        synced_at)
            SELECT s.g, a.server_id, 10000000 + s.g, a.login, a.id, s.symbol,
                   CASE WHEN random() < 0.5 THEN 'buy' ELSE 'sell' END, s.volume, s.open_price,
                   :t0 - random() * interval '60 days',
                   round(s.open_price * (0.99 + random() * 0.02)::numeric, 5), 0, 0,
                   round((random() * 400 - 200)::numeric, 2), 0, round(-(s.volume * 3.5), 2), :t0
            FROM (
                SELECT g, {account_of} AS account_id, {symbol} AS symbol,
                       round((0.01 + random() * 5)::numeric, 2) AS volume,
                       round((0.5 + random() * 2)::numeric, 5) AS open_price
                FROM generate_series(1, {opened}) AS g
            ) AS s
            JOIN trading_accounts a ON a.id = s.account_id;
            SELECT setval('open_positions_id_seq', {opened})
            """,  # noqa: S608
        ),
        (
            "pending_orders",
            f"""
            INSERT INTO pending_orders (id, server_id, ticket, login, trading_account_id, symbol, type, volume,
                                        price, stop_limit_price, sl, tp, setup_time, synced_at)
            SELECT s.g, a.server_id, 20000000 + s.g, a.login, a.id, s.symbol, {_pending_type_sql()},
                   round((0.01 + random() * 5)::numeric, 2), round((0.5 + random() * 2)::numeric, 5), 0, 0, 0,
                   :t0 - random() * interval '30 days', :t0
            FROM (
                SELECT g, {account_of} AS account_id, {symbol} AS symbol FROM generate_series(1, {pending}) AS g
            ) AS s
            JOIN trading_accounts a ON a.id = s.account_id;
            SELECT setval('pending_orders_id_seq', {pending})
            """,  # noqa: S608
        ),
        (
            "channels",
            """
            INSERT INTO deposit_channels (id, method, name, icon_url, account_info, allowed_countries,
                                          allowed_currencies, min_amount, max_amount, fee_fixed, fee_percent,
                                          exchange_rate_source, exchange_rates, enabled, sort_order, created_at,
                                          updated_at, pay_type, pay_data, pay_url)
            VALUES (1, 'bank', 'Bank wire', '', '', '[]', '["USD"]', 10, 100000, 0, 0, 'fixed', '{}', true, 0,
                    :t0, :t0, 'offline', '{}', '');
            SELECT setval('deposit_channels_id_seq', 1);
            INSERT INTO withdrawal_channels (id, method, name, icon_url, account_info, allowed_countries,
                                             allowed_currencies, min_amount, max_amount, fee_fixed, fee_percent,
                                             exchange_rate_source, exchange_rates, enabled, sort_order, created_at,
                                             updated_at)
            VALUES (1, 'bank', 'Bank wire', '', '', '[]', '["USD"]', 10, 100000, 0, 0, 'fixed', '{}', true, 0,
                    :t0, :t0);
            SELECT setval('withdrawal_channels_id_seq', 1)
            """,  # noqa: S608
        ),
        (
            "money",
            f"""
            CREATE TEMPORARY TABLE book_money ON COMMIT DROP AS
            SELECT g AS id,
                   CASE WHEN g <= {deposits} THEN 'deposit'
                        WHEN g <= {deposits + withdrawals} THEN 'withdrawal' ELSE 'transfer' END AS kind,
                   CASE WHEN g <= {deposits} THEN g
                        WHEN g <= {deposits + withdrawals} THEN g - {deposits}
                        ELSE g - {deposits + withdrawals} END AS object_id,
                   {account_of} AS account_id,
                   :t0 - random() * interval '365 days' AS created_at,
                   CASE WHEN r < 0.8 THEN 'approved' WHEN r < 0.9 THEN 'disapproved'
                        WHEN r < 0.95 THEN 'pending' ELSE 'auditing' END AS review_status,
                   round((10 + random() * 5000)::numeric, 2) AS amount
            FROM (SELECT g, random() AS r FROM generate_series(1, {deposits + withdrawals + transfers}) AS g) AS s;

            INSERT INTO review_items (id, type, status, user_id, object_id, object_ref, auditor_id, remark,
                                      details, created_at, updated_at, decided_at)
            SELECT m.id, m.kind, m.review_status, a.user_id, m.object_id,
                   upper(left(m.kind, 1)) || lpad(m.object_id::text, 10, '0'),
                   CASE WHEN m.review_status IN ('approved', 'disapproved') THEN 1 END, '', '{{}}',
                   m.created_at, m.created_at,
                   CASE WHEN m.review_status IN ('approved', 'disapproved') THEN m.created_at + interval '1 hour' END
            FROM book_money m JOIN trading_accounts a ON a.id = m.account_id;
            SELECT setval('review_items_id_seq', {deposits + withdrawals + transfers});

            INSERT INTO deposits (id, order_number, user_id, trading_account_id, channel_id, amount, fee, currency,
                                  status, client_remark, remark, review_item_id, created_at, expires_at,
                                  submitted_at, completed_at)
            SELECT m.object_id, 'D' || lpad(m.object_id::text, 10, '0'), a.user_id, a.id, 1, m.amount, 0, 'USD',
                   CASE m.review_status WHEN 'pending' THEN 'auditing' ELSE m.review_status END, '', '', m.id,
                   m.created_at - interval '10 minutes', m.created_at + interval '1 day', m.created_at,
                   CASE WHEN m.review_status IN ('approved', 'disapproved') THEN m.created_at + interval '1 hour' END
            FROM book_money m JOIN trading_accounts a ON a.id = m.account_id WHERE m.kind = 'deposit';
            SELECT setval('deposits_id_seq', {deposits});

            INSERT INTO withdrawals (id, order_number, user_id, trading_account_id, channel_id, method, amount, fee,
                                     account_currency, exchange_rate, remittance_amount, currency,
                                     payout_details_encrypted, client_remark, status, review_item_id, created_at,
                                     updated_at, completed_at)
            SELECT m.object_id, 'W' || lpad(m.object_id::text, 10, '0'), a.user_id, a.id, 1, 'bank', m.amount, 0,
                   'USD', 1, m.amount, 'USD', '!', '',
                   CASE m.review_status WHEN 'pending' THEN 'auditing' ELSE m.review_status END, m.id,
                   m.created_at, m.created_at,
                   CASE WHEN m.review_status IN ('approved', 'disapproved') THEN m.created_at + interval '1 hour' END
            FROM book_money m JOIN trading_accounts a ON a.id = m.account_id WHERE m.kind = 'withdrawal';
            SELECT setval('withdrawals_id_seq', {withdrawals});

            INSERT INTO transfers (id, order_number, user_id, source_account_id, target_account_id, amount,
                                   currency, remark, status, needs_review, review_item_id, created_at, updated_at,
                                   completed_at)
            SELECT m.object_id, 'T' || lpad(m.object_id::text, 10, '0'), a.user_id, a.id,
                   coalesce(b.id, a.id), m.amount, 'USD', '',
                   CASE m.review_status WHEN 'pending' THEN 'auditing' ELSE m.review_status END, true, m.id,
                   m.created_at, m.created_at,
                   CASE WHEN m.review_status IN ('approved', 'disapproved') THEN m.created_at + interval '1 hour' END
            FROM book_money m JOIN trading_accounts a ON a.id = m.account_id
            LEFT JOIN trading_accounts b ON b.id = a.id + {holders} AND b.user_id = a.user_id
            WHERE m.kind = 'transfer';
            SELECT setval('transfers_id_seq', {transfers})
            """,  # noqa: S608
        ),
    ]


def build(database_url, seed=0.42, scale=1.0, echo=print):
    """Fill the (migrated, empty) database; returns ({table: rows}, seconds)."""
    engine = create_engine(sqlalchemy_url(database_url))
    started = time.perf_counter()
    try:
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL synchronous_commit = off"))
            conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
            conn.execute(text("SET LOCAL work_mem = '64MB'"))
            conn.execute(text("SELECT setseed(:seed)"), {"seed": seed})
            t0 = conn.execute(text("SELECT date_trunc('day', now() AT TIME ZONE 'UTC')")).scalar_one()
            for label, statement in steps(scale):
                step_started = time.perf_counter()
                driver = conn.connection.driver_connection
                with driver.cursor() as cursor:
                    for part in (p.strip() for p in statement.split(";")):
                        if part:
                            cursor.execute(part.replace("%", "%%").replace(":t0", "%(t0)s"), {"t0": t0})
                echo(f"  {label:<18} {time.perf_counter() - step_started:7.1f} s")
        analyze_started = time.perf_counter()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("SET maintenance_work_mem = '256MB'"))
            conn.execute(text("VACUUM ANALYZE"))
        echo(f"  {'vacuum analyze':<18} {time.perf_counter() - analyze_started:7.1f} s")
        elapsed = time.perf_counter() - started
    finally:
        engine.dispose()
    return row_counts(database_url), elapsed


def row_counts(database_url):
    """{table: rows} of the book's tables."""
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as conn:
            return {
                table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
                for table in TABLES
            }
    finally:
        engine.dispose()


def largest_tree_top_ib(database_url):
    """(id, descendants) of the top-level IB with the most users below it."""
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as conn:
            return tuple(
                conn.execute(
                    text(
                        "SELECT p.ancestor_id, count(*) FROM ib_tree_paths p JOIN users u ON u.id = p.ancestor_id "
                        "WHERE u.user_type = 'ib' AND u.parent_ib_id IS NULL "
                        "GROUP BY p.ancestor_id ORDER BY count(*) DESC, p.ancestor_id LIMIT 1"
                    )
                ).one()
            )
    finally:
        engine.dispose()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--database-url", required=True, help="a migrated, empty database")
    parser.add_argument("--seed", type=float, default=0.42, help="setseed() value, in [-1, 1]")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the trading and money row counts")
    args = parser.parse_args(argv)
    counts, elapsed = build(args.database_url, args.seed, args.scale)
    for table, rows in counts.items():
        print(f"{table:<24} {rows:>10,}")
    print(f"built in {elapsed:.1f} s")


if __name__ == "__main__":
    main()
