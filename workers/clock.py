"""`python -m workers.clock`: puts the periodic jobs on their queues (RQ's cron scheduler).

Run one per deployment; the jobs are safe to run twice, so a second clock during a
deploy does no harm.
"""

import logging
import os
import time

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.cron import CronScheduler
from rq.exceptions import StopRequested

from crm_app import create_app
from workers import LOG_FORMAT, cron_options
from workers.exports import remove_expired_export_files
from workers.money import expire_deposit_drafts, reconcile_balance_operations
from workers.rebates import calculate_rebates, settle_rebates
from workers.sync import sync_all_servers

log = logging.getLogger(__name__)
REDIS_RETRY_SECONDS = (1, 2, 5, 10)


def main():
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    app = create_app()
    if not app.config.get("REDIS_URL"):
        raise SystemExit("REDIS_URL is not set: periodic jobs need Redis.")
    scheduler = CronScheduler(connection=Redis.from_url(app.config["REDIS_URL"]))
    register_periodic_jobs(scheduler)
    run_through_redis_outages(scheduler)


def register_periodic_jobs(scheduler):
    """Each job goes on the clock with its declared queue, timeout and TTLs."""
    scheduler.register(
        reconcile_balance_operations,
        interval=int(os.environ.get("RECONCILE_INTERVAL_SECONDS", "30")),
        **cron_options(reconcile_balance_operations),
    )
    scheduler.register(expire_deposit_drafts, interval=600, **cron_options(expire_deposit_drafts))
    scheduler.register(remove_expired_export_files, interval=3600, **cron_options(remove_expired_export_files))
    scheduler.register(
        sync_all_servers,
        interval=int(os.environ.get("SYNC_INTERVAL_SECONDS", "60")),
        **cron_options(sync_all_servers),
    )
    scheduler.register(
        calculate_rebates,
        interval=int(os.environ.get("REBATE_INTERVAL_SECONDS", "60")),
        **cron_options(calculate_rebates),
    )
    scheduler.register(
        settle_rebates,
        interval=int(os.environ.get("REBATE_SETTLEMENT_INTERVAL_SECONDS", "86400")),
        **cron_options(settle_rebates),
    )


def run_through_redis_outages(scheduler):
    """RQ's scheduler loop ends on the first Redis error; a restarted Redis must not stop
    the periodic jobs (the reconciler above all), so start the loop again once it answers."""
    failures = 0
    while True:
        started = time.monotonic()
        try:
            scheduler.start()
            return  # stopped by a signal
        except (RedisConnectionError, RedisTimeoutError) as exc:
            if time.monotonic() - started > 60:
                failures = 0
            delay = REDIS_RETRY_SECONDS[min(failures, len(REDIS_RETRY_SECONDS) - 1)]
            failures += 1
            log.warning("clock: Redis unreachable (%s); starting again in %s s", exc, delay)
            try:
                time.sleep(delay)
            except StopRequested:  # SIGTERM while waiting (RQ's handler raises it)
                return


if __name__ == "__main__":
    main()
