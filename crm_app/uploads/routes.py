"""File uploads for receipts and KYC documents."""

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
        upload = services.save_upload(current_user, files["file"].stream, files["file"].filename)
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
            download_name=upload.original_name,
            as_attachment=False,
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "private, max-age=0"
        return response
