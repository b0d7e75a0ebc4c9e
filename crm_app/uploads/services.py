"""Uploads: checked by content (not by name), stored behind the storage interface."""

import hashlib
import io
import re
import uuid

from flask import current_app
from sqlalchemy import select

from crm_app.common.errors import DomainError, NotFound, ValidationFailed
from crm_app.common.runtime import runtime
from crm_app.extensions import db
from crm_app.uploads.models import Upload

# Magic numbers of the types we accept, and the type each one is.
SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"%PDF-", "application/pdf", "pdf"),
)

UPLOAD_URL_PATTERN = re.compile(r"/api/v1/uploads/([0-9a-f]{32})$")


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
