"""File uploads for receipts and KYC documents."""

import re
import unicodedata

from flask import send_file
from flask.views import MethodView
from marshmallow import fields

from crm_app.common.api import Blueprint, current_user
from crm_app.common.schemas import Schema
from crm_app.uploads import services

blp = Blueprint("uploads", __name__, url_prefix="/api/v1", description="Uploaded files")


FILE_CONTENT = {
    content_type: {"schema": {"type": "string", "format": "binary"}} for _, content_type, _ in services.SIGNATURES
}
EXTENSION_OF = {content_type: extension for _, content_type, extension in services.SIGNATURES}
# A served file is never a page of ours: no script, no form, no same-origin access.
SERVED_FILE_HEADERS = {
    "Content-Security-Policy": "sandbox",
    "Cache-Control": "private, no-store",
    "X-Content-Type-Options": "nosniff",
}


def plain_file_name(name):
    """The uploaded name as kept for the record: no control, format (bidirectional
    override) or surrogate characters, which could disguise it where it is shown."""
    kept = "".join(ch for ch in (name or "") if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn"))
    return re.sub(r"\s+", " ", kept).strip() or None


def served_file_name(upload):
    """Named after what the file is (its sniffed type), never what it was called."""
    return f"upload-{upload.id}.{EXTENSION_OF.get(upload.content_type, 'bin')}"


class UploadFormSchema(Schema):
    file = fields.Raw(required=True, metadata={"type": "string", "format": "binary"})


class UploadAnswerSchema(Schema):
    id = fields.String()
    url = fields.String(metadata={"description": "What `receipt_url` and KYC document fields take"})
    content_type = fields.String()
    size = fields.Integer()


@blp.route("/uploads")
class Uploads(MethodView):
    @blp.login_required()
    @blp.arguments(UploadFormSchema, location="files")
    @blp.response(201, UploadAnswerSchema)
    @blp.error_responses(413, 415)
    def post(self, files):
        """Upload a receipt or KYC document (JPEG, PNG or PDF, checked by content)"""
        upload = services.save_upload(current_user, files["file"].stream, plain_file_name(files["file"].filename))
        return {
            "id": upload.id,
            "url": services.upload_url(upload),
            "content_type": upload.content_type,
            "size": upload.size,
        }


@blp.route("/uploads/<upload_id>")
class UploadFile(MethodView):
    @blp.login_required()
    @blp.response(200, content_type="application/octet-stream")
    @blp.doc(responses={"200": {"description": "The file, with its own content type", "content": FILE_CONTENT}})
    def get(self, upload_id):
        """The uploaded file (its owner and admins only)"""
        upload = services.get_visible_upload(upload_id, current_user)
        response = send_file(
            services.open_upload(upload),
            mimetype=upload.content_type,
            download_name=served_file_name(upload),
            as_attachment=False,
        )
        response.headers.update(SERVED_FILE_HEADERS)
        return response
