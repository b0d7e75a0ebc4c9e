"""Rebate jobs: calculate rebates on the synced closing deals; settle and pay them.

Both are safe to run twice or at once: a closing deal pays an IB once (unique row per
deal and IB), and a rebate joins one settlement only.
"""

import logging

from workers import job

log = logging.getLogger(__name__)


@job(queue="default", timeout=1800, result_ttl=600)
def calculate_rebates():
    from crm_app.rebates.services import calculate_rebates as calculate

    counts = calculate()
    log.info("rebates: %s closing deal(s) read, %s rebate row(s) written", counts["deals"], counts["rebates"])
    return counts


@job(queue="default", timeout=1800, result_ttl=600)
def settle_rebates():
    from crm_app.rebates.services import calculate_rebates as calculate
    from crm_app.rebates.services import settle_rebates as settle

    calculate()
    answer = settle()
    log.info("rebates: %s settlement(s), %s paid", answer["settlements"], answer["paid"])
    return {"settlements": answer["settlements"], "paid": answer["paid"]}
