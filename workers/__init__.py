"""RQ wiring: queues, the `job` decorator, and enqueueing (in-process without Redis).

Jobs take ids and primitives, keep user-visible state in the database, and call
the same services the routes call.
"""

import contextvars
import functools
import logging
import os

from flask import current_app, has_app_context

log = logging.getLogger(__name__)

QUEUES = ("default", "exports", "sync")

# The id of the RQ job running in this process (None outside a job): every log record carries it.
current_job_id = contextvars.ContextVar("current_job_id", default=None)
_base_record_factory = logging.getLogRecordFactory()


def _record_with_job_id(*args, **kwargs):
    record = _base_record_factory(*args, **kwargs)
    record.running_job_id = current_job_id.get() or "-"
    return record


logging.setLogRecordFactory(_record_with_job_id)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [job %(running_job_id)s] %(message)s"

_worker_app = None
_worker_app_pid = None


def set_worker_app(app):
    """Called by the worker before it forks: jobs reuse this preloaded app."""
    global _worker_app, _worker_app_pid
    _worker_app = app
    _worker_app_pid = os.getpid()


def _job_app():
    global _worker_app
    if _worker_app is None:
        from crm_app import create_app

        set_worker_app(create_app())
    if os.getpid() != _worker_app_pid:
        # A forked work horse must not share the parent's database connections.
        from crm_app.extensions import db

        with _worker_app.app_context():
            db.engine.dispose(close=False)
        set_worker_app(_worker_app)
    return _worker_app


def job(queue="default", timeout=300, result_ttl=3600, failure_ttl=7 * 24 * 3600, retry=None):
    """Declare an RQ job: its queue, hard timeout, TTLs and retry policy."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")

    def decorator(func):
        @functools.wraps(func)
        def run(*args, **kwargs):
            from rq import get_current_job

            rq_job = get_current_job()
            token = current_job_id.set(rq_job.id if rq_job is not None else current_job_id.get())
            try:
                if has_app_context():
                    return func(*args, **kwargs)
                with _job_app().app_context():
                    return func(*args, **kwargs)
            finally:
                current_job_id.reset(token)

        run.queue_name = queue
        run.job_options = {
            "job_timeout": timeout,
            "result_ttl": result_ttl,
            "failure_ttl": failure_ttl,
            "retry": retry,
        }
        return run

    return decorator


def enqueue_options(job_func):
    """The declared options every enqueue path passes (RQ would otherwise use its 180 s default)."""
    options = dict(job_func.job_options)
    if options.get("retry") is None:
        options.pop("retry")
    return options


def cron_options(job_func):
    """The declared options for the clock's `CronScheduler.register` (it takes no retry)."""
    options = enqueue_options(job_func)
    options.pop("retry", None)
    return {"queue_name": job_func.queue_name, **options}


def get_queue(name):
    from rq import Queue

    from crm_app.common.runtime import runtime

    return Queue(name, connection=runtime().redis)


def enqueue(job_func, *args, description=None, job_id=None, **kwargs):
    """Put a job on its queue; without Redis (first run) run it here and now.

    `description` replaces RQ's default (the call with its arguments) so that
    secrets passed to a job never reach the worker's log.
    """
    from crm_app.common.runtime import runtime

    if runtime().redis is None:
        try:
            job_func(*args, **kwargs)
        except Exception:
            log.exception("in-process job %s failed", description or job_func.__name__)
        return None
    return get_queue(job_func.queue_name).enqueue(
        job_func,
        args=args,
        kwargs=kwargs,
        description=description or job_func.__name__,
        job_id=job_id,
        **enqueue_options(job_func),
    )


def app_config():
    return current_app.config
