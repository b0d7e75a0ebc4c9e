"""`python -m workers.worker`: an RQ worker on every queue, with the scheduler.

The app is created once before forking (RQ forks a work horse per job), so each
job starts warm; the horse drops the parent's database connections first.
"""

import logging
import sys

from redis import Redis
from rq import Queue, SimpleWorker, Worker
from sqlalchemy.orm import configure_mappers

from crm_app import create_app
from workers import LOG_FORMAT, QUEUES, current_job_id, set_worker_app

# How long shutdown waits for the command (pubsub) thread before leaving it to die with the
# process: redis-py 8's PubSubWorkerThread.stop() otherwise waits out its 60 s read.
PUBSUB_STOP_SECONDS = 2
# Past its declared timeout plus this grace, the parent kills a job's work horse even if the
# job ignores the alarm (a C call that never returns, or a job that catches the exception).
HARD_LIMIT_GRACE_SECONDS = 10
# How often the parent checks on a running horse (RQ's default is 30 s).
MONITOR_INTERVAL_SECONDS = 5


class BoundedShutdownMixin:
    """Stops the command thread with a bounded wait, whatever redis-py's `stop()` does."""

    pubsub_stop_seconds = PUBSUB_STOP_SECONDS

    def unsubscribe(self):
        thread, pubsub = self.pubsub_thread, self.pubsub
        if not thread:
            return
        self.pubsub_thread = None
        # Clear the flag first: the server's answer to UNSUBSCRIBE wakes the thread's read, and
        # it must then find the flag down (cleared after, it would go back to a 60 s read).
        thread._running.clear()
        try:
            pubsub.unsubscribe()
        except Exception:  # the connection may be gone already; the thread is a daemon
            self.log.debug("Worker %s: unsubscribe failed", self.name, exc_info=True)
        thread.join(timeout=self.pubsub_stop_seconds)
        if thread.is_alive():
            self.log.warning("Worker %s: command thread still reading; leaving it (daemon)", self.name)
            return
        pubsub.close()


class JobIdInLogsMixin:
    """RQ's own lines around a job (started, failed with its traceback, done) carry its id too."""

    def perform_job(self, job, queue):
        token = current_job_id.set(job.id)
        try:
            return super().perform_job(job, queue)
        finally:
            current_job_id.reset(token)


class BurstWorker(JobIdInLogsMixin, SimpleWorker):
    """An in-process worker that drains the queues and returns (tests, one-off runs).

    It opens no command channel: nobody sends a burst run commands, and without the
    channel there is no thread to stop when it ends.
    """

    def subscribe(self):
        pass

    def unsubscribe(self):
        pass


class HardLimitWorker(JobIdInLogsMixin, BoundedShutdownMixin, Worker):
    """RQ's forking worker whose parent kills a horse that outlives its job's timeout."""

    hard_limit_grace_seconds = HARD_LIMIT_GRACE_SECONDS

    def maintain_heartbeats(self, job):
        limit = job.timeout
        if limit is not None and limit > 0 and self.current_job_working_time > limit + self.hard_limit_grace_seconds:
            self.log.warning(
                "Worker %s: job %s ran %.0f s past its %s s limit; killing its work horse",
                self.name,
                job.id,
                self.current_job_working_time - limit,
                limit,
            )
            self.kill_horse()
            return
        super().maintain_heartbeats(job)


def build_worker(connection, queue_names=QUEUES, **kwargs):
    queues = [Queue(name, connection=connection) for name in queue_names]
    kwargs.setdefault("job_monitoring_interval", MONITOR_INTERVAL_SECONDS)
    return HardLimitWorker(queues, connection=connection, **kwargs)


def main(argv=None):
    argv = argv if argv is not None else sys.argv[1:]
    burst = "--burst" in argv
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    app = create_app()
    if not app.config.get("REDIS_URL"):
        sys.exit("REDIS_URL is not set: without Redis, jobs run inside the web process.")
    set_worker_app(app)
    configure_mappers()
    connection = Redis.from_url(app.config["REDIS_URL"])
    worker = build_worker(connection)
    worker.work(with_scheduler=True, burst=burst)


if __name__ == "__main__":
    main()
