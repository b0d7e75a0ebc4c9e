"""`Idempotency-Key` on the routes that move money.

The first request with a key reserves it (a row inserted before the work starts);
the same key with the same body then replays the first answer, the same key with
another body is a 409, and a second request while the first is still running is
a 409 too.

The request's first commit of its own work also marks the key `committed`, in the
same transaction, so the database always knows whether anything was done:

- a request that ends in a server error before committing anything frees its key
  for a retry; one that had committed keeps it (`interrupted`): sending it again
  would do the work twice, so the key answers 409 `idempotency_key_interrupted`
  and the result is in the caller's history;
- a key whose request died without a word (process killed, database gone while
  it ended) is judged the same way once it is older than any request can live
  (`IDEMPOTENCY_STALE_SECONDS`): still `in_progress` means nothing was done, so
  the retry runs; `committed` answers 409 `idempotency_key_interrupted`.
"""

import functools
import hashlib
import re
from contextlib import contextmanager
from datetime import timedelta

from flask import current_app, request
from sqlalchemy import delete, event, update
from sqlalchemy.exc import IntegrityError

from crm_app.common.errors import Conflict, DomainError, ValidationFailed
from crm_app.common.timeutil import utcnow
from crm_app.extensions import db
from crm_app.money.models import IdempotencyRecord

HEADER = "Idempotency-Key"
KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,128}")

HEADER_DOC = {
    "in": "header",
    "name": HEADER,
    "required": False,
    "schema": {"type": "string", "maxLength": 128},
    "description": "1 to 128 visible ASCII characters. Same key and body: the first answer is replayed. "
    "Same key, other body: 409.",
}


def request_fingerprint():
    digest = hashlib.sha256()
    for part in (request.method, request.path, request.query_string, request.get_data(cache=True)):
        digest.update(part if isinstance(part, bytes) else part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _record_key(user_id, route, key):
    return (
        IdempotencyRecord.user_id == user_id,
        IdempotencyRecord.route == route,
        IdempotencyRecord.key == key,
    )


def _stale_before():
    return utcnow() - timedelta(seconds=current_app.config.get("IDEMPOTENCY_STALE_SECONDS", 120))


def _interrupted():
    return Conflict(
        code="idempotency_key_interrupted",
        message="The first request with this Idempotency-Key failed after it was recorded.",
        errors={HEADER: ["Its result is in your history; send a new key to try again."]},
    )


def _take_over_abandoned(user_id, route, key):
    """Free a key whose request died before committing anything (so a retry is safe)."""
    freed = db.session.execute(
        delete(IdempotencyRecord)
        .where(*_record_key(user_id, route, key))
        .where(IdempotencyRecord.status == "in_progress", IdempotencyRecord.created_at < _stale_before())
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return bool(freed)


def _reserve(user_id, route, key, fingerprint, retry=True):
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
    if existing.status == "completed":
        return existing
    stale = existing.created_at < _stale_before()
    if existing.status == "interrupted" or (existing.status == "committed" and stale):
        raise _interrupted()
    if existing.status == "in_progress" and stale and retry:
        db.session.expunge(existing)
        if _take_over_abandoned(user_id, route, key):
            return _reserve(user_id, route, key, fingerprint, retry=False)
    raise Conflict(code="idempotency_key_in_use", errors={HEADER: ["A request with this key is in progress."]})


@contextmanager
def _marking_work_commits(user_id, route, key):
    """Flip the key to `committed` inside the transaction of the request's first commit."""
    session = db.session()
    marked = []

    def before_commit(session):
        if not marked:
            session.execute(
                update(IdempotencyRecord)
                .where(*_record_key(user_id, route, key), IdempotencyRecord.status == "in_progress")
                .values(status="committed")
                .execution_options(synchronize_session=False)
            )

    def after_commit(session):
        marked.append(True)

    event.listen(session, "before_commit", before_commit)
    event.listen(session, "after_commit", after_commit)
    try:
        yield
    finally:
        event.remove(session, "before_commit", before_commit)
        event.remove(session, "after_commit", after_commit)


def _finish(user_id, route, key, status, body):
    record = db.session.get(IdempotencyRecord, (user_id, route, key))
    if record is None:
        return
    if status >= 500 and record.status == "in_progress":
        db.session.delete(record)  # nothing was done: a retry may run it
    elif status >= 500:
        record.status, record.response_status = "interrupted", status
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
            # Visible ASCII only: a NUL would fail in the database, and keys are compared as sent.
            if not KEY_PATTERN.fullmatch(key):
                raise ValidationFailed(errors={HEADER: ["1 to 128 visible ASCII characters."]})
            user_id, route = current_user.id, request.url_rule.rule + ":" + request.method
            replay = _reserve(user_id, route, key, request_fingerprint())
            if replay is not None:
                return replay.response_body, replay.response_status, {"Idempotency-Replayed": "true"}
            try:
                with _marking_work_commits(user_id, route, key):
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

        # A key reused with another body, or still running, is a 409.
        return blp.alt_response(409, "CONFLICT")(blp.doc(parameters=[HEADER_DOC])(wrapper))

    return decorator
