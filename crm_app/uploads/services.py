"""Uploads: checked by content (not by name), stored behind the storage interface."""

import hashlib
import io
import math
import re
import uuid
from datetime import timedelta

from flask import current_app
from sqlalchemy import select

from crm_app.auth.models import User
from crm_app.common.errors import DomainError, NotFound, TooManyRequests, ValidationFailed
from crm_app.common.runtime import runtime
from crm_app.common.timeutil import utcnow
from crm_app.extensions import db
from crm_app.uploads.models import Upload

# Magic numbers of the types we accept, and the type each one is.
SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"%PDF-", "application/pdf", "pdf"),
)

UPLOAD_URL_PATTERN = re.compile(r"/api/v1/uploads/([0-9a-f]{32})$")
COUNT_WINDOW = timedelta(hours=1)
BYTES_WINDOW = timedelta(days=1)


class PayloadTooLarge(DomainError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(DomainError):
    status = 415
    code = "unsupported_media_type"


def sniff_type(head):
    for magic, content_type, extension in SIGNATURES:
        if head.startswith(magic):
            return content_type, extension
    return None, None


def save_upload(owner, stream, original_name):
    limit = current_app.config["UPLOAD_MAX_BYTES"]
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(errors={"file": [f"At most {limit} bytes."]})
    if not data:
        raise ValidationFailed(errors={"file": ["The file is empty."]})
    content_type, extension = sniff_type(data[:16])
    if content_type is None:
        raise UnsupportedMediaType(errors={"file": ["Only JPEG, PNG and PDF files are accepted."]})

    check_upload_quota(owner.id, len(data))
    upload_id = uuid.uuid4().hex
    storage_key = f"uploads/{upload_id[:2]}/{upload_id}.{extension}"
    runtime().storage.save(storage_key, io.BytesIO(data))
    upload = Upload(
        id=upload_id,
        owner_id=owner.id,
        original_name=(original_name or f"upload.{extension}")[-255:],
        content_type=content_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        storage_key=storage_key,
    )
    db.session.add(upload)
    db.session.commit()
    return upload


def seconds_until(moment, now):
    return max(1, math.ceil((moment - now).total_seconds()))


def check_upload_quota(owner_id, size):
    """Uploads per rolling hour and bytes per rolling day, per user: 429 with `Retry-After`.

    The user's row is locked (FOR NO KEY UPDATE) until the upload is committed, so two
    uploads at once cannot both take the last place; the counts come from the uploads
    table itself, so they are exact.
    """
    max_count = current_app.config["UPLOAD_MAX_PER_HOUR"]
    max_bytes = current_app.config["UPLOAD_MAX_BYTES_PER_DAY"]
    db.session.execute(select(User.id).where(User.id == owner_id).with_for_update(key_share=True))
    now = utcnow()
    recent = db.session.execute(
        select(Upload.created_at, Upload.size)
        .where(Upload.owner_id == owner_id, Upload.created_at > now - BYTES_WINDOW)
        .order_by(Upload.created_at, Upload.id)
    ).all()

    last_hour = [row.created_at for row in recent if row.created_at > now - COUNT_WINDOW]
    if len(last_hour) >= max_count:
        # Once this one is an hour old, one fewer than the limit remain in the window.
        frees_a_place = last_hour[len(last_hour) - max_count] if max_count > 0 else now
        raise TooManyRequests(
            seconds_until(frees_a_place + COUNT_WINDOW, now),
            code="upload_limit",
            errors={"file": [f"At most {max_count} uploads an hour."]},
        )

    total = sum(row.size for row in recent)
    if total + size > max_bytes:
        retry_at = now + BYTES_WINDOW  # the file alone is over the daily allowance
        for row in recent:
            total -= row.size
            if total + size <= max_bytes:
                retry_at = row.created_at + BYTES_WINDOW
                break
        raise TooManyRequests(
            seconds_until(retry_at, now),
            code="upload_bytes_limit",
            errors={"file": [f"At most {max_bytes} bytes of uploads a day."]},
        )


def upload_url(upload):
    base = (current_app.config.get("PUBLIC_BASE_URL") or "").rstrip("/")
    return f"{base}/api/v1/uploads/{upload.id}"


def get_visible_upload(upload_id, viewer):
    """The upload if the viewer owns it or is an admin; otherwise it does not exist."""
    upload = db.session.get(Upload, upload_id) if re.fullmatch(r"[0-9a-f]{32}", upload_id or "") else None
    if upload is None or (upload.owner_id != viewer.id and viewer.user_type != "admin"):
        raise NotFound()
    return upload


def find_owned_upload_by_url(url, owner_id):
    """For fields such as `receipt_url`: the upload behind a URL we handed to this owner."""
    match = UPLOAD_URL_PATTERN.search((url or "").split("?")[0])
    if not match:
        return None
    return db.session.scalar(select(Upload).where(Upload.id == match.group(1), Upload.owner_id == owner_id))


def open_upload(upload):
    return runtime().storage.open(upload.storage_key)
