"""Export status and the signed download link; `export_route` for the report packages."""

from flask import current_app, send_file
from flask.views import MethodView

from crm_app.common.api import Blueprint, ErrorSchema, current_user
from crm_app.exports import schemas, services
from crm_app.exports.writers import CONTENT_TYPES

blp = Blueprint("exports", __name__, url_prefix="/api/v1/exports", description="Report exports")

FILE_CONTENT = {
    content_type.split(";")[0]: {"schema": {"type": "string", "format": "binary"}}
    for content_type in CONTENT_TYPES.values()
}


@blp.route("/<export_id>")
class ExportStatus(MethodView):
    @blp.login_required()
    @blp.response(200, schemas.ExportSchema)
    def get(self, export_id):
        """Export status and progress (its owner and admins)

        `download_url` is a fresh signed link; it expires with the export.
        """
        return services.get_visible_export(export_id, current_user)


@blp.route("/<export_id>/download")
class ExportDownload(MethodView):
    @blp.arguments(schemas.DownloadQuerySchema, location="query")
    @blp.response(200, content_type="application/octet-stream", description="The file (CSV, XLSX or PDF)")
    @blp.alt_response(202, schema=schemas.ExportProgressSchema, description="Not ready yet: progress")
    @blp.alt_response(403, schema=ErrorSchema, description="Tampered link")
    @blp.alt_response(409, schema=ErrorSchema, description="The export failed: `errors.reason` says why")
    @blp.alt_response(410, schema=ErrorSchema, description="The link has expired")
    @blp.doc(responses={"200": {"description": "The file (CSV, XLSX or PDF)", "content": FILE_CONTENT}})
    def get(self, args, export_id):
        """Download an export through its signed link (no bearer token)

        202 with progress until the file is ready; 409 when the export failed (with the
        reason); 403 for a tampered link; 410 once the link has expired.
        """
        export = services.export_for_download(export_id, args["token"])
        if export.status != "done":
            response = current_app.json.response(services.progress_of(export))
            response.status_code = 202
            response.headers["Retry-After"] = "2"
            response.headers["Cache-Control"] = "no-store"
            return response
        response = send_file(
            services.open_export_file(export),
            mimetype=export.content_type.split(";")[0],
            as_attachment=True,
            download_name=export.file_name,
        )
        # As stored (CSV names its charset); send_file would add a second charset.
        response.headers["Content-Type"] = export.content_type
        response.headers["Cache-Control"] = "private, no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response


def export_route(blp, path, report_name, filters_schema, role="any", summary=None, endpoint=None):
    """Add `POST {path}` to a report blueprint: the list's filters plus `format` in the
    body, `{download_url}` at once.

        export_route(blp, "/withdrawals/export", "withdrawals", WithdrawalFilterSchema,
                     summary="出金报表导出 Export the withdrawal report")
    """
    body_schema = schemas.export_request_schema(filters_schema)

    def post(self, body):
        export_format = body.pop("format")
        return services.start_export(current_user, report_name, body, export_format)

    post.__doc__ = (summary or f"Export the {report_name} report") + (
        "\n\nAnswers at once with a signed `download_url`; a worker builds the file "
        "(`format`: csv default, xlsx, pdf) with the same rows and scope as the list."
    )
    # 429 while the caller's earlier exports are still being built.
    post = blp.error_responses(429)(post)
    post = blp.login_required(role)(blp.arguments(body_schema)(blp.response(200, schemas.ExportStartedSchema)(post)))
    view = type(f"{body_schema.__name__}View", (MethodView,), {"post": post})
    blp.route(path, endpoint=endpoint or f"export_{report_name.replace('-', '_')}")(view)
    return view
