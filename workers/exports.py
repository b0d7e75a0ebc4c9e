"""Export jobs: build one export's file; remove expired ones."""

import logging

from crm_app.exports.services import (
    EXPORT_JOB_TIMEOUT_SECONDS,
    fail_stalled_exports,
    remove_expired_exports,
    run_export,
)
from workers import job

log = logging.getLogger(__name__)


# The row in the database is what people watch; RQ's own result need not outlive a day.
@job(queue="exports", timeout=EXPORT_JOB_TIMEOUT_SECONDS, result_ttl=24 * 3600, failure_ttl=7 * 24 * 3600)
def build_export(export_id):
    """Stream the export's rows into its file (safe to run twice: a done export stays)."""
    log.info("build_export %s", export_id)
    return run_export(export_id)


@job(queue="default", timeout=900, result_ttl=600)
def remove_expired_export_files():
    """Hourly: delete expired exports' files and rows; fail exports a dead worker left running."""
    removed = remove_expired_exports()
    stalled = fail_stalled_exports()
    log.info("removed %s expired export(s); %s stalled export(s) marked failed", removed, stalled)
    return {"removed": removed, "stalled": stalled}
