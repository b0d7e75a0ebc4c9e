"""Readiness: can we reach what we need to serve requests?"""

import logging

from sqlalchemy import text

from crm_app.common.runtime import runtime
from crm_app.extensions import db

log = logging.getLogger(__name__)


def readiness():
    checks = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any driver error means "not ready"
        log.warning("readiness: database unreachable: %s", exc)
        db.session.rollback()
        checks["database"] = "unreachable"
    redis_client = runtime().redis
    if redis_client is not None:
        try:
            redis_client.ping()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any redis error means "not ready"
            log.warning("readiness: redis unreachable: %s", exc)
            checks["redis"] = "unreachable"
    return checks
