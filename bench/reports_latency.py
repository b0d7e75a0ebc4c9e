"""Report latency on a realistic book.

    python -m bench.reports_latency [--admin-url URL] [--repeat 30] [--warmup 3]
                                    [--scale 1.0] [--keep-database] [--database-url URL]

1. Creates a PostgreSQL database of its own (through the admin URL), runs the release
   step (`flask db upgrade`) against it and fills it with `bench.book`.
2. In this process, with `crm_app.create_app()` and an app context, times
   `run_report(<report>_query(caller, filters), page, 20, <report>_count(...))` (what the
   list route runs) of the six reports for three
   callers (the admin, the top IB of the largest tree, one client under it), with the
   usual filters (status all, type all, the last 30 days, close time), page 1 and page
   500: warm-up runs, then p50/p95 of the timed runs, in milliseconds.
3. Drops the database, whatever happened (`--keep-database` keeps it, and
   `--database-url` measures a book built before, e.g. for `bench.export_closed_orders`).

The export of the 1,000,000 closed orders is measured by `bench.export_closed_orders`.
"""

import argparse
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import date, timedelta

from bench import book
from bench.auth_get import DEFAULT_ADMIN_URL, PROJECT_ROOT, scratch_database, server_version

PAGE_SIZE = 20
PAGES = (1, 500)
TARGET_P95_MS = 100.0
REPORTS = ("history-orders", "positions", "pending-orders", "deposits", "withdrawals", "transfers")


def report_functions(services, report):
    """(query, exact total) of a report, as its list route runs them."""
    name = report.replace("-", "_")
    return getattr(services, f"{name}_query"), getattr(services, f"{name}_count")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_DATABASE_ADMIN_URL", DEFAULT_ADMIN_URL))
    parser.add_argument("--repeat", type=int, default=30, help="timed runs per report, caller and page")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs before them")
    parser.add_argument("--scale", type=float, default=1.0, help="bench.book --scale")
    parser.add_argument("--database-url", help="a book built before (kept with --keep-database): no build")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of the slowest page-1 query")
    parser.add_argument("--keep-database", action="store_true", help="do not drop the database at the end")
    return parser.parse_args(argv)


def app_env(database_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "SQLALCHEMY_"))}
    env.update(
        {
            "APP_ENV": "production",
            "DATABASE_URL": database_url,
            "SECRET_KEY": secrets.token_urlsafe(48),
            "JWT_SECRET_KEY": secrets.token_urlsafe(48),
        }
    )
    return env


def migrate(env):
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi:app", "db", "upgrade"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        sys.exit(f"flask db upgrade failed:\n{result.stdout}\n{result.stderr}")


def percentile(values, fraction):
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def callers(db, User):
    """(label, user) for the admin, the top IB of the largest tree, and a client under it."""
    from sqlalchemy import func, select

    from crm_app.auth.models import IbTreePath

    admin = db.session.scalar(select(User).where(User.user_type == "admin").order_by(User.id).limit(1))
    below = func.count(IbTreePath.descendant_id)
    top = db.session.execute(
        select(IbTreePath.ancestor_id, below)
        .join(User, User.id == IbTreePath.ancestor_id)
        .where(User.user_type == "ib", User.parent_ib_id.is_(None))
        .group_by(IbTreePath.ancestor_id)
        .order_by(below.desc(), IbTreePath.ancestor_id)
        .limit(1)
    ).one()
    ib = db.session.get(User, top[0])
    client = db.session.scalar(
        select(User)
        .join(IbTreePath, IbTreePath.descendant_id == User.id)
        .where(IbTreePath.ancestor_id == ib.id, User.user_type == "client")
        .order_by(User.id)
        .limit(1)
    )
    return [("admin", admin), (f"IB (tree of {top[1] - 1:,})", ib), ("client", client)]


def typical_filters(today):
    return {
        "status": "all",
        "trading_type": "all",
        "time_type": "close",
        "start_time": today - timedelta(days=30),
        "end_time": today,
    }


def measure(app, args):
    from crm_app.auth.models import User
    from crm_app.extensions import db
    from crm_app.reports import services

    results = []
    with app.app_context():
        today = date.today() + timedelta(days=1)
        filters = typical_filters(today)
        people = callers(db, User)
        ids = [(label, user.id) for label, user in people]
        db.session.remove()
        for label, user_id in ids:
            for report in REPORTS:
                query_for, count_for = report_functions(services, report)
                for page in PAGES:
                    timings, total = [], None
                    for run in range(args.warmup + args.repeat):
                        user = db.session.get(User, user_id)
                        started = time.perf_counter()
                        query, count = query_for(user, filters), count_for(user, filters)
                        rows, total = services.run_report(query, page, PAGE_SIZE, count)
                        elapsed = (time.perf_counter() - started) * 1000
                        db.session.remove()
                        if run >= args.warmup:
                            timings.append(elapsed)
                    results.append(
                        {
                            "caller": label,
                            "report": report,
                            "page": page,
                            "rows": len(rows),
                            "total": total,
                            "p50": statistics.median(timings),
                            "p95": percentile(timings, 0.95),
                            "user_id": user_id,
                        }
                    )
                    row = results[-1]
                    print(
                        f"  {label:<22} {report:<15} page {page:<4} total {total:>8,}"
                        f"  p50 {row['p50']:8.1f} ms  p95 {row['p95']:8.1f} ms",
                        flush=True,
                    )
    return results, filters


def explain(app, result, filters):
    """EXPLAIN (ANALYZE, BUFFERS) of a result's count and page queries."""
    from sqlalchemy import text

    from crm_app.auth.models import User
    from crm_app.extensions import db
    from crm_app.reports import services

    query_for, count_for = report_functions(services, result["report"])
    with app.app_context():
        user = db.session.get(User, result["user_id"])
        query, count = query_for(user, filters), count_for(user, filters)
        page = query.limit(PAGE_SIZE).offset((result["page"] - 1) * PAGE_SIZE)
        for label, statement in (("count", count), ("page", page)):
            compiled = statement.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True})
            plan = db.session.execute(text(f"EXPLAIN (ANALYZE, BUFFERS) {compiled}")).scalars().all()
            print(f"\n-- {result['caller']} {result['report']} page {result['page']}: {label} query")
            print("\n".join(plan))
        db.session.remove()


def print_table(results, settings):
    print(f"\n### Report latency ({date.today().isoformat()})\n")
    print(settings + "\n")
    print("| caller | report | page | rows total | p50 ms | p95 ms |")
    print("|---|---|---:|---:|---:|---:|")
    for r in results:
        flag = " ⚠" if r["page"] == 1 and r["p95"] > TARGET_P95_MS else ""
        print(
            f"| {r['caller']} | {r['report']} | {r['page']} | {r['total']:,} | {r['p50']:.1f} | {r['p95']:.1f}{flag} |"
        )
    worst = max((r for r in results if r["page"] == 1), key=lambda r: r["p95"])
    over = sum(1 for r in results if r["page"] == 1 and r["p95"] > TARGET_P95_MS)
    print(
        f"\nPage 1 p95 target {TARGET_P95_MS:.0f} ms: {over} of {len(results) // len(PAGES)} over;"
        f" worst {worst['caller']} / {worst['report']} at {worst['p95']:.1f} ms."
    )
    return worst


@contextmanager
def book_database(args):
    """(database URL, row counts, build seconds) of a fresh book, or of the one given."""
    if args.database_url:
        yield args.database_url, book.row_counts(args.database_url), 0.0
        return
    with scratch_database(args.admin_url, keep=args.keep_database) as database_url:
        started = time.perf_counter()
        migrate(app_env(database_url))
        print(f"migrated in {time.perf_counter() - started:.1f} s")
        print("building the book:")
        counts, built = book.build(database_url, scale=args.scale)
        for table, rows in counts.items():
            print(f"  {table:<22} {rows:>10,}")
        print(f"book built in {built:.1f} s")
        yield database_url, counts, built


def main(argv=None):
    args = parse_args(argv)
    with book_database(args) as (database_url, counts, built):
        env = app_env(database_url)
        os.environ.update(env)
        from crm_app import create_app

        app = create_app()
        settings = (
            f"PostgreSQL {server_version(database_url)}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}; book: {counts['users']:,} users, {counts['trading_accounts']:,} accounts, "
            f"{counts['closed_positions']:,} closed, {counts['open_positions']:,} open, "
            f"{counts['pending_orders']:,} pending, "
            f"{counts['deposits'] + counts['withdrawals'] + counts['transfers']:,} money movements "
            f"(built and vacuumed in {built:.0f} s); filters: status all, type all, last 30 days, close time; "
            f"page size {PAGE_SIZE}; {args.warmup} warm-up + {args.repeat} timed runs, in process "
            f"(`run_report`: count + page); load average before: {load_average()}"
        )
        print("\nlatency:")
        results, filters = measure(app, args)
        worst = print_table(results, settings)
        print(f"load average after: {load_average()}")
        if args.explain:
            explain(app, worst, filters)


def load_average():
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
