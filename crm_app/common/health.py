"""Readiness: can we reach what we need to serve requests?"""

import logging

from sqlalchemy import text

from crm_app.common.runtime import runtime
from crm_app.extensions import db

log = logging.getLogger(__name__)


def database_answers():
    """SELECT 1, twice at most: after a database restart the first try may land on a pooled
    connection the restart killed (SQLAlchemy then drops it), which says nothing about now."""
    for attempt in (1, 2):
        try:
            db.session.execute(text("SELECT 1"))
            return True
        except Exception as exc:  # noqa: BLE001 - any driver error means "not ready"
            db.session.rollback()
            if attempt == 2:
                log.warning("readiness: database unreachable: %s", exc)
    return False


def readiness():
    checks = {"database": "ok" if database_answers() else "unreachable"}
    redis_client = runtime().redis
    if redis_client is not None:
        try:
            redis_client.ping()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any redis error means "not ready"
            log.warning("readiness: redis unreachable: %s", exc)
            checks["redis"] = "unreachable"
    return checks
