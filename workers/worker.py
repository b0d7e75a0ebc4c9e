"""`python -m workers.worker`: an RQ worker on every queue, with the scheduler.

The app is created once before forking (RQ forks a work horse per job), so each
job starts warm; the horse drops the parent's database connections first.
"""

import logging
import sys

from redis import Redis
from rq import Queue, Worker
from sqlalchemy.orm import configure_mappers

from crm_app import create_app
from workers import QUEUES, set_worker_app


def main(argv=None):
    argv = argv if argv is not None else sys.argv[1:]
    burst = "--burst" in argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app()
    if not app.config.get("REDIS_URL"):
        sys.exit("REDIS_URL is not set: without Redis, jobs run inside the web process.")
    set_worker_app(app)
    configure_mappers()
    connection = Redis.from_url(app.config["REDIS_URL"])
    queues = [Queue(name, connection=connection) for name in QUEUES]
    worker = Worker(queues, connection=connection)
    worker.work(with_scheduler=True, burst=burst)


if __name__ == "__main__":
    main()
