"""Trading-server sync jobs: one job per server on the `sync` queue, and the periodic fan-out.

At most one sync job per server waits or runs at a time: enqueueing takes a Redis lock
(`SET NX`) naming the job, and the job frees it when it ends; a lock whose job is gone
(finished, failed, killed) is taken over. Should two jobs of one server still meet, the
service's per-server lease makes the second answer "already running" without work.
"""

import logging
import uuid

from rq import get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from workers import enqueue, job

log = logging.getLogger(__name__)

SYNC_JOB_TIMEOUT = 1800
LOCK_KEY = "crm:sync:server:{}"
LIVE_STATUSES = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
# Delete the lock only if it still names that job (another enqueue may have replaced it).
COMPARE_AND_DELETE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


@job(queue="sync", timeout=SYNC_JOB_TIMEOUT, result_ttl=3600, failure_ttl=7 * 24 * 3600)
def sync_trading_server(server_id):
    """Sync one trading server (safe to run twice: the second waits for nothing and does nothing)."""
    from crm_app.sync.services import sync_server

    current = get_current_job()
    try:
        result = sync_server(server_id)
    finally:
        if current is not None:
            release_lock(current.connection, server_id, current.id)
    log.info("sync job %s of server %s: %s", current.id if current else "-", server_id, result.status)
    return result.as_dict()


@job(queue="sync", timeout=120, result_ttl=600)
def sync_all_servers():
    """The periodic entry point: one sync job per enabled server."""
    from crm_app.sync.services import enabled_server_ids

    return [enqueue_server_sync(server_id) for server_id in enabled_server_ids()]


def enqueue_server_sync(server_id):
    """Queue a sync of the server unless one is queued or running already; answers that job.

    Without Redis the sync runs here and now (`workers.enqueue`).
    """
    from crm_app.common.runtime import runtime

    redis = runtime().redis
    if redis is None:
        enqueue(sync_trading_server, server_id, description=f"sync_trading_server({server_id})")
        return {"server_id": server_id, "job_id": None, "status": "finished"}
    key = LOCK_KEY.format(server_id)
    for _ in range(5):
        job_id = f"sync-server-{server_id}-{uuid.uuid4().hex[:12]}"
        if redis.set(key, job_id, nx=True, ex=SYNC_JOB_TIMEOUT + 300):
            queued = enqueue(
                sync_trading_server, server_id, job_id=job_id, description=f"sync_trading_server({server_id})"
            )
            return {"server_id": server_id, "job_id": queued.id, "status": status_name(queued.get_status())}
        holder = redis.get(key)
        if holder is None:
            continue  # freed between our two calls: try again
        holder = holder.decode()
        try:
            status = Job.fetch(holder, connection=redis).get_status()
        except NoSuchJobError:
            status = None
        if status in LIVE_STATUSES:
            return {"server_id": server_id, "job_id": holder, "status": status_name(status)}
        # The lock outlived its job (killed worker, expired job): take it over.
        redis.eval(COMPARE_AND_DELETE, 1, key, holder)
    raise RuntimeError(f"could not queue a sync of server {server_id}: its lock keeps changing hands")


def release_lock(connection, server_id, job_id):
    try:
        connection.eval(COMPARE_AND_DELETE, 1, LOCK_KEY.format(server_id), job_id)
    except Exception:
        # The lock expires on its own; a later enqueue also frees it once this job is finished.
        log.exception("could not free the sync lock of server %s", server_id)


def status_name(status):
    return getattr(status, "value", status) or "unknown"
