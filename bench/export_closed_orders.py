"""Export of 1,000,000 closed orders by the real export job, against COPY of the same query.

    python -m bench.export_closed_orders [--admin-url URL] [--database-url URL]
                                         [--formats csv,xlsx] [--scale 1.0] [--keep-database]

1. Builds the book (`bench.book`: 1,000,000 closed positions) in a database of its own,
   or uses one built before (`--database-url`, e.g. kept by `bench.reports_latency`).
2. Claims a Redis db number of its own (SET NX, as the test suite does), and for each
   format asks for the admin's `history-orders` export without filters the way the
   export route does (`create_export`: the export row, then the RQ job on `exports`).
3. Runs `python -m workers.worker --burst` (the Procfile's worker: it forks a work horse
   per job) under a small parent process that reports the peak RSS of its children
   (`getrusage(RUSAGE_CHILDREN)`: the largest of the worker and its work horse), and
   takes the job's time from the export row (`started_at` to `finished_at`: count, rows,
   file, storage) as well as the worker process's wall time (start-up included).
4. In the same run, before and after the CSV export, times
   `psql -c "COPY (<the export's SQL>) TO STDOUT WITH (FORMAT csv)" > file`: the very
   statement the job hands PostgreSQL, with its parameters written in, and checks that
   the export's file is the header plus exactly those bytes.
5. Drops the database (unless kept) and empties the Redis db it claimed.
"""

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager

from bench.auth_get import DEFAULT_ADMIN_URL, PROJECT_ROOT, libpq_url
from bench.reports_latency import app_env, book_database, load_average

REPORT = "history-orders"
FILTERS = {"trading_type": "all"}
TARGET_RATIO = 1.5
TARGET_RSS_MB = 300
REDIS_BASE_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
REDIS_OWNER_KEY = "crm:test-run-owner"  # the key the test suite claims a db number with

# The parent of the worker: runs it, then prints its own children's peak RSS (in KiB).
MEASURED_WORKER = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
code = subprocess.call([sys.executable, "-m", "workers.worker", "--burst"])
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"code": code, "seconds": time.perf_counter() - started, "max_rss_kib": usage.ru_maxrss}))
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_DATABASE_ADMIN_URL", DEFAULT_ADMIN_URL))
    parser.add_argument("--database-url", help="a book built before: no build")
    parser.add_argument("--formats", default="csv,xlsx", help="comma separated: csv, xlsx")
    parser.add_argument("--scale", type=float, default=1.0, help="bench.book --scale")
    parser.add_argument("--keep-database", action="store_true")
    return parser.parse_args(argv)


@contextmanager
def redis_db():
    """A Redis db number nobody else uses (claimed with SET NX), emptied at the end."""
    import redis

    token = f"bench-{os.getpid()}-{uuid.uuid4().hex}"
    for number in range(15, 0, -1):
        url = f"{REDIS_BASE_URL.rstrip('/')}/{number}"
        connection = redis.Redis.from_url(url)
        if connection.set(REDIS_OWNER_KEY, token, nx=True, ex=6 * 3600):
            try:
                yield url
            finally:
                connection.flushdb()
            return
    sys.exit("no free Redis db number")


def run_worker(env):
    result = subprocess.run(
        [sys.executable, "-c", MEASURED_WORKER], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"worker parent failed:\n{result.stderr[-3000:]}")
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    if outcome["code"] != 0:
        sys.exit(f"worker exited with {outcome['code']}:\n{result.stderr[-3000:]}")
    return outcome


def ask_for_export(app, export_format):
    from crm_app.auth.models import User
    from crm_app.exports.services import create_export
    from crm_app.extensions import db

    with app.test_request_context():
        admin = db.session.scalar(db.select(User).where(User.user_type == "admin").order_by(User.id).limit(1))
        export = create_export(admin, REPORT, FILTERS, export_format, language="en")
        export_id = export.id
        db.session.remove()
    return export_id


def export_row(app, export_id):
    from crm_app.exports.models import ExportJob
    from crm_app.extensions import db

    with app.app_context():
        export = db.session.get(ExportJob, export_id)
        row = {
            "status": export.status,
            "error": export.error,
            "rows": export.rows_done,
            "bytes": export.file_size,
            "seconds": (export.finished_at - export.started_at).total_seconds(),
            "storage_key": export.storage_key,
        }
        db.session.remove()
    return row


def copy_sql(app):
    """The statement the CSV job gives COPY, with its parameters written in."""
    from crm_app.auth.models import User
    from crm_app.broker.services import broker_zone
    from crm_app.exports.services import copy_statement, get_report
    from crm_app.extensions import db

    with app.app_context():
        admin = db.session.scalar(db.select(User).where(User.user_type == "admin").order_by(User.id).limit(1))
        query = get_report(REPORT).query_for(admin, FILTERS)
        statement = copy_statement(db.session, query, broker_zone())
        assert statement is not None, "this report must take the COPY path"
        sql = str(statement.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
        db.session.remove()
    return sql


def psql_copy(database_url, sql, path):
    command = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", libpq_url(database_url)]
    copy = f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)"
    with open(path, "wb") as out:
        started = time.perf_counter()
        subprocess.run([*command, "-c", copy], stdout=out, check=True)
        return time.perf_counter() - started


def main(argv=None):
    args = parse_args(argv)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    with (
        book_database(args) as (database_url, counts, _),
        redis_db() as redis_url,
        tempfile.TemporaryDirectory(prefix="bench-export-") as folder,
    ):
        env = app_env(database_url) | {"REDIS_URL": redis_url, "UPLOAD_FOLDER": os.path.join(folder, "storage")}
        env["SECRET_KEY"] = env["JWT_SECRET_KEY"] = secrets.token_urlsafe(48)
        os.environ.update(env)
        from crm_app import create_app
        from crm_app.common.runtime import runtime

        app = create_app()
        print(f"book: {counts['closed_positions']:,} closed positions; load average {load_average()}", flush=True)
        sql = copy_sql(app)
        copies, results = [], {}
        copy_path = os.path.join(folder, "copy.csv")
        for export_format in formats:
            if export_format == "csv":
                copies.append(psql_copy(database_url, sql, copy_path))
                print(f"  psql COPY (same query) TO STDOUT CSV: {copies[-1]:6.1f} s", flush=True)
            load_before = load_average()
            export_id = ask_for_export(app, export_format)
            worker = run_worker(env)
            row = export_row(app, export_id)
            if row["status"] != "done":
                sys.exit(f"{export_format} export {row['status']}: {row['error']}")
            results[export_format] = row | {
                "worker_seconds": worker["seconds"],
                "max_rss_mb": worker["max_rss_kib"] / 1024,
                "load": f"{load_before} -> {load_average()}",
            }
            print(
                f"  {export_format} export job: {row['seconds']:6.1f} s ({row['rows']:,} rows, {row['bytes']:,} B);"
                f" worker process {worker['seconds']:.1f} s, peak RSS {worker['max_rss_kib'] / 1024:.0f} MB;"
                f" load {results[export_format]['load']}",
                flush=True,
            )
            if export_format == "csv":
                copies.append(psql_copy(database_url, sql, copy_path))
                print(f"  psql COPY (same query) TO STDOUT CSV: {copies[-1]:6.1f} s", flush=True)
                with app.app_context(), runtime().storage.open(row["storage_key"]) as built:
                    built.readline()  # the header (after the byte-order mark)
                    same = built.read() == open(copy_path, "rb").read()
                print(f"  export file = header + COPY's bytes: {'yes' if same else 'NO'}", flush=True)
                results["csv"]["same_bytes"] = same

        print()
        if "csv" in results:
            copy_seconds = sum(copies) / len(copies)
            ratio = results["csv"]["seconds"] / copy_seconds
            verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
            print(
                f"CSV: export job {results['csv']['seconds']:.1f} s, COPY {copy_seconds:.1f} s "
                f"(mean of {', '.join(f'{c:.1f}' for c in copies)}): ratio {ratio:.2f} "
                f"(target <= {TARGET_RATIO}: {verdict})"
            )
        for export_format, row in results.items():
            verdict = "met" if row["max_rss_mb"] <= TARGET_RSS_MB else "NOT met"
            print(
                f"{export_format.upper()}: {row['seconds']:.1f} s, worker peak RSS {row['max_rss_mb']:.0f} MB "
                f"(target <= {TARGET_RSS_MB} MB: {verdict})"
            )
        print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
