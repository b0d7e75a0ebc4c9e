"""Rebate jobs: calculate rebates on the synced closing deals; settle and pay them.

All are safe to run twice or at once: a closing deal pays an IB once (unique row per
deal and IB), and a rebate joins one settlement only. They run on the `default` queue,
with the other periodic jobs; a run asked for by an admin keeps its state in its
`rebate_runs` row, which `GET /api/v1/admin/rebates/runs/{id}` serves.
"""

import logging

from rq import get_current_job

from workers import job

log = logging.getLogger(__name__)

REBATE_JOB_TIMEOUT = 1800


@job(queue="default", timeout=REBATE_JOB_TIMEOUT, result_ttl=600)
def calculate_rebates():
    from crm_app.rebates.services import calculate_rebates as calculate

    counts = calculate()
    log.info("rebates: %s closing deal(s) read, %s rebate row(s) written", counts["deals"], counts["rebates"])
    return counts


@job(queue="default", timeout=REBATE_JOB_TIMEOUT, result_ttl=600)
def settle_rebates():
    from crm_app.rebates.services import calculate_rebates as calculate
    from crm_app.rebates.services import settle_rebates as settle

    calculate()
    answer = settle()
    log.info("rebates: %s settlement(s), %s paid", answer["settlements"], answer["paid"])
    return {"settlements": answer["settlements"], "paid": answer["paid"]}


@job(queue="default", timeout=REBATE_JOB_TIMEOUT, result_ttl=600)
def run_rebates(run_id):
    """An admin's on-demand run (`POST /api/v1/admin/rebates/run`): calculate, and settle if asked."""
    from crm_app.rebates.services import execute_run

    current = get_current_job()
    counts = execute_run(run_id)
    log.info("rebate run %s (job %s): %s", run_id, current.id if current else "in-process", counts or "already done")
    return counts
