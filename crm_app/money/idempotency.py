"""`Idempotency-Key` on the routes that move money.

The first request with a key reserves it (a row inserted before the work starts);
the same key with the same body then replays the first answer, the same key with
another body is a 409, and a second request while the first is still running is
a 409 too. A request that ends in a server error frees its key for a retry.
"""

import functools
import hashlib

from flask import request
from sqlalchemy.exc import IntegrityError

from crm_app.common.errors import Conflict, DomainError, ValidationFailed
from crm_app.extensions import db
from crm_app.money.models import IdempotencyRecord

HEADER = "Idempotency-Key"

HEADER_DOC = {
    "in": "header",
    "name": HEADER,
    "required": False,
    "schema": {"type": "string", "maxLength": 128},
    "description": "Same key and body: the first answer is replayed. Same key, other body: 409.",
}


def request_fingerprint():
    digest = hashlib.sha256()
    for part in (request.method, request.path, request.query_string, request.get_data(cache=True)):
        digest.update(part if isinstance(part, bytes) else part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _reserve(user_id, route, key, fingerprint):
    record = IdempotencyRecord(user_id=user_id, route=route, key=key, request_hash=fingerprint)
    db.session.add(record)
    try:
        db.session.commit()
        return None
    except IntegrityError:
        db.session.rollback()
    existing = db.session.get(IdempotencyRecord, (user_id, route, key))
    if existing is None:  # freed between our insert and our read: treat as busy
        raise Conflict(code="idempotency_key_in_use")
    if existing.request_hash != fingerprint:
        raise Conflict(
            code="idempotency_key_reused",
            errors={HEADER: ["This key was used with another request body."]},
        )
    if existing.status != "completed":
        raise Conflict(code="idempotency_key_in_use", errors={HEADER: ["A request with this key is in progress."]})
    return existing


def _finish(user_id, route, key, status, body):
    record = db.session.get(IdempotencyRecord, (user_id, route, key))
    if record is None:
        return
    if status >= 500:
        db.session.delete(record)
    else:
        record.status, record.response_status, record.response_body = "completed", status, body
    db.session.commit()


def idempotent(blp):
    """Decorator for a view below `login_required`: honours the Idempotency-Key header."""
    from crm_app.common.api import current_user, error_body

    def decorator(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            key = request.headers.get(HEADER)
            if key is None:
                return func(*args, **kwargs)
            key = key.strip()
            if not key or len(key) > 128:
                raise ValidationFailed(errors={HEADER: ["1 to 128 characters."]})
            user_id, route = current_user.id, request.url_rule.rule + ":" + request.method
            replay = _reserve(user_id, route, key, request_fingerprint())
            if replay is not None:
                return replay.response_body, replay.response_status, {"Idempotency-Replayed": "true"}
            try:
                response = func(*args, **kwargs)
            except DomainError as exc:
                db.session.rollback()
                _finish(
                    user_id,
                    route,
                    key,
                    exc.status,
                    error_body(exc.status, code=exc.code, message=exc.message, errors=exc.errors),
                )
                raise
            except Exception:
                db.session.rollback()
                _finish(user_id, route, key, 500, None)
                raise
            _finish(user_id, route, key, response.status_code, response.get_json(silent=True))
            return response

        return blp.doc(parameters=[HEADER_DOC])(wrapper)

    return decorator
