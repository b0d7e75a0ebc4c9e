"""The review queue's rules. Each item type registers what approval and rejection do.

Approval claims the item first (`pending -> auditing` in one conditional UPDATE,
committed), then runs the effect, then records the verdict: two admins approving
at once can never both run the effect. An effect that fails leaves the item in
`auditing` with `last_error`, and approving it again retries the effect.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select, update

from crm_app.admin.services import record_audit_log
from crm_app.common.errors import Conflict, DomainError, NotFound, ValidationFailed
from crm_app.common.timeutil import utcnow
from crm_app.extensions import db
from crm_app.review.models import ReviewItem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReviewHandler:
    """What a review type does: `approve(item, actor)` and `reject(item, actor)` apply the
    effect in the session (the queue commits); `describe(item)` shows the object."""

    approve: Callable
    reject: Callable
    describe: Callable
    # Runs after the verdict is committed: work that must not hold the item's
    # transaction open, such as sending the balance operation the verdict queued.
    after: Callable | None = None


HANDLERS: dict[str, ReviewHandler] = {}


def register_review_handler(review_type, handler):
    HANDLERS[review_type] = handler


def open_review_item(review_type, user_id, object_id, object_ref="", details=None):
    """Put an object in the queue (the caller commits, with the object itself)."""
    item = ReviewItem(
        type=review_type,
        status="pending",
        user_id=user_id,
        object_id=object_id,
        object_ref=object_ref or str(object_id),
        details=details or {},
    )
    db.session.add(item)
    return item


def get_review_item(item_id):
    item = db.session.get(ReviewItem, item_id)
    if item is None:
        raise NotFound()
    return item


def describe_object(item):
    handler = HANDLERS.get(item.type)
    return handler.describe(item) if handler else {}


def list_review_items(page, size, type=None, status=None, user_id=None):
    query = select(ReviewItem)
    if type:
        query = query.where(ReviewItem.type == type)
    if status:
        query = query.where(ReviewItem.status == status)
    if user_id:
        query = query.where(ReviewItem.user_id == user_id)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.session.scalars(
        query.order_by(ReviewItem.created_at.desc(), ReviewItem.id.desc()).limit(size).offset((page - 1) * size)
    ).all()
    return rows, total


def _claim(item_id, actor):
    """pending -> auditing, atomically; or an auditing item again, for a retry, when
    its last attempt failed, or when it was claimed so long ago that the request
    which claimed it must have died (the database went away before it could record
    its failure). Handlers are safe to run again: their effects are keyed."""
    now = utcnow()
    stale_before = now - timedelta(seconds=current_app.config["REVIEW_CLAIM_STALE_SECONDS"])
    claimed = db.session.execute(
        update(ReviewItem)
        .where(
            ReviewItem.id == item_id,
            (ReviewItem.status == "pending")
            | (
                (ReviewItem.status == "auditing")
                & (ReviewItem.last_error.is_not(None) | (ReviewItem.updated_at < stale_before))
            ),
        )
        .values(status="auditing", auditor_id=actor.id, last_error=None, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    item = get_review_item(item_id)
    db.session.refresh(item)
    if not claimed:
        raise Conflict(code="review_already_decided", errors={"status": [f"This item is {item.status}."]})
    return item


def approve_review_item(item_id, actor, client=None, remark=""):
    get_review_item(item_id)
    item = _claim(item_id, actor)
    handler = HANDLERS[item.type]
    try:
        handler.approve(item, actor)
    except Exception as exc:
        # Whatever failed, the item must not stay claimed without a reason.
        db.session.rollback()
        _record_failure(item_id, describe_failure(exc))
        raise
    item.status = "approved"
    item.remark = remark or ""
    item.decided_at = utcnow()
    record_audit_log(
        f"review.{item.type}.approve",
        actor=actor,
        client=client,
        target_type="review_item",
        target_id=item.id,
        details={"object_id": item.object_id},
    )
    db.session.commit()
    _after(handler, item)
    return item


def reject_review_item(item_id, actor, remark, client=None):
    if not (remark or "").strip():
        raise ValidationFailed(errors={"remark": ["A reason is required to reject."]})
    get_review_item(item_id)
    item = _claim(item_id, actor)
    try:
        HANDLERS[item.type].reject(item, actor)
    except Exception as exc:
        db.session.rollback()
        _record_failure(item_id, describe_failure(exc))
        raise
    item.status = "disapproved"
    item.remark = remark.strip()
    item.decided_at = utcnow()
    record_audit_log(
        f"review.{item.type}.reject",
        actor=actor,
        client=client,
        target_type="review_item",
        target_id=item.id,
        details={"object_id": item.object_id, "remark": item.remark},
    )
    db.session.commit()
    _after(HANDLERS[item.type], item)
    return item


def _after(handler, item):
    if handler.after is not None:
        handler.after(item)
        db.session.refresh(item)


def describe_failure(exc):
    if isinstance(exc, DomainError):
        return f"{exc.code}: {exc.errors or exc.message or ''}"
    return f"{type(exc).__name__}: {exc}"


def _record_failure(item_id, message):
    log.warning("review item %s: effect failed: %s", item_id, message)
    db.session.execute(
        update(ReviewItem).where(ReviewItem.id == item_id).values(last_error=message[:2000], updated_at=utcnow())
    )
    db.session.commit()
