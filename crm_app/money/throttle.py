"""A per-user throttle on the routes that move money: 429 with `Retry-After`.

Each user may send `MONEY_THROTTLE_MAX_REQUESTS` requests to one money route per
`MONEY_THROTTLE_WINDOW_SECONDS`. A request that repeats an `Idempotency-Key` already
known does no new work (it is replayed, or refused with 409), so it is never counted
nor throttled: a client retrying after a lost answer always learns what happened.
"""

import functools

from flask import current_app, request

from crm_app.common.errors import TooManyRequests
from crm_app.common.runtime import runtime
from crm_app.extensions import db
from crm_app.money.idempotency import HEADER, KEY_PATTERN
from crm_app.money.models import IdempotencyRecord


def route_key():
    return request.url_rule.rule + ":" + request.method


def repeats_a_known_key(user_id):
    key = (request.headers.get(HEADER) or "").strip()
    if not KEY_PATTERN.fullmatch(key):
        return False
    return db.session.get(IdempotencyRecord, (user_id, route_key(), key)) is not None


def check_money_throttle(user_id):
    cfg = current_app.config
    counters = runtime().counters
    counter = f"money:{user_id}:{route_key()}"
    if counters.hit(counter, cfg["MONEY_THROTTLE_WINDOW_SECONDS"]) > cfg["MONEY_THROTTLE_MAX_REQUESTS"]:
        raise TooManyRequests(counters.get(counter)[1])


def money_throttle(blp):
    """Decorator between `login_required` and `idempotent` on a money route."""
    from crm_app.common.api import ErrorSchema, current_user

    def decorator(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            if not repeats_a_known_key(current_user.id):
                check_money_throttle(current_user.id)
            return func(*args, **kwargs)

        return blp.alt_response(
            429,
            schema=ErrorSchema,
            description="Too many money requests; retry after `Retry-After` seconds",
            headers={"Retry-After": {"schema": {"type": "integer"}, "required": True}},
        )(wrapper)

    return decorator
