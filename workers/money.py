"""Money jobs: the balance-operation reconciler."""

import logging

from crm_app.deposits.services import expire_stale_drafts
from crm_app.money.services import reconcile_open_operations
from workers import job

log = logging.getLogger(__name__)


@job(queue="default", timeout=600, result_ttl=600)
def reconcile_balance_operations():
    """Settle every operation a lost answer or a crash left open (safe to run twice)."""
    settled = reconcile_open_operations()
    log.info("reconciler settled %s balance operation(s)", settled)
    return settled


@job(queue="default", timeout=300, result_ttl=600)
def expire_deposit_drafts():
    """Close deposit drafts never submitted in time."""
    expired = expire_stale_drafts()
    log.info("expired %s deposit draft(s)", expired)
    return expired
