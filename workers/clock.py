"""`python -m workers.clock`: puts the periodic jobs on their queues (RQ's cron scheduler).

Run one per deployment; the jobs are safe to run twice, so a second clock during a
deploy does no harm.
"""

import logging
import os

from redis import Redis
from rq.cron import CronScheduler

from crm_app import create_app
from workers.exports import remove_expired_export_files
from workers.money import expire_deposit_drafts, reconcile_balance_operations
from workers.rebates import calculate_rebates, settle_rebates
from workers.sync import sync_all_servers


def main():
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app()
    if not app.config.get("REDIS_URL"):
        raise SystemExit("REDIS_URL is not set: periodic jobs need Redis.")
    scheduler = CronScheduler(connection=Redis.from_url(app.config["REDIS_URL"]))
    scheduler.register(
        reconcile_balance_operations,
        queue_name=reconcile_balance_operations.queue_name,
        interval=int(os.environ.get("RECONCILE_INTERVAL_SECONDS", "30")),
        job_timeout=reconcile_balance_operations.job_options["job_timeout"],
    )
    scheduler.register(expire_deposit_drafts, queue_name=expire_deposit_drafts.queue_name, interval=600)
    scheduler.register(remove_expired_export_files, queue_name=remove_expired_export_files.queue_name, interval=3600)
    scheduler.register(
        sync_all_servers,
        queue_name=sync_all_servers.queue_name,
        interval=int(os.environ.get("SYNC_INTERVAL_SECONDS", "60")),
        job_timeout=sync_all_servers.job_options["job_timeout"],
    )
    scheduler.register(
        calculate_rebates,
        queue_name=calculate_rebates.queue_name,
        interval=int(os.environ.get("REBATE_INTERVAL_SECONDS", "60")),
        job_timeout=calculate_rebates.job_options["job_timeout"],
    )
    scheduler.register(
        settle_rebates,
        queue_name=settle_rebates.queue_name,
        interval=int(os.environ.get("REBATE_SETTLEMENT_INTERVAL_SECONDS", "86400")),
        job_timeout=settle_rebates.job_options["job_timeout"],
    )
    scheduler.start()


if __name__ == "__main__":
    main()
