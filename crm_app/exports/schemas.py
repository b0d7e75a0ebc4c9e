from collections.abc import Mapping

from marshmallow import fields, pre_load, validate

from crm_app.common.schemas import BrokerTime, Schema
from crm_app.exports.models import EXPORT_FORMATS


def export_format_field():
    return fields.String(
        load_default="csv",
        validate=validate.OneOf(EXPORT_FORMATS),
        metadata={"description": "File format: `csv` (default, UTF-8 with BOM), `xlsx` or `pdf`"},
    )


def is_blank(value):
    return value is None or value == ""


class ExportBodySchema(Schema):
    """An export's body reads its optional filters as the list's query string does: a
    portal copies its list filters into the body, so `""` and `null` are no filter (and
    `format`, `page`, `size` left blank are their defaults). A required field stays
    required: blank, it is refused as before."""

    def on_bind_field(self, field_name, field_obj):
        super().on_bind_field(field_name, field_obj)
        if not field_obj.required:
            field_obj.allow_none = True  # the document shows optional filters as nullable

    @pre_load
    def check_json_types(self, data, **kwargs):
        # Overrides the base schema's hook of this name, so the blanks are gone before
        # its type checks run (marshmallow orders hooks by name, not by class).
        if isinstance(data, Mapping):
            optional = {field.data_key or name for name, field in self.load_fields.items() if not field.required}
            data = {key: value for key, value in data.items() if not (key in optional and is_blank(value))}
        return super().check_json_types(data, **kwargs)


def export_request_schema(filters_schema, name=None):
    """The body of a POST .../export route: the list's filters plus `format`.

    `page` and `size` may come along (the seed sends them) but are ignored: an export
    carries every row that matches. Optional filters sent `""` or `null` are no filter.
    """
    name = name or f"{filters_schema.__name__.removesuffix('Schema')}ExportSchema"
    return type(name, (ExportBodySchema, filters_schema), {"format": export_format_field()})


class ExportStartedSchema(Schema):
    download_url = fields.String(
        required=True,
        metadata={
            "description": "Signed link to the file (no token needed; expires after 24 hours by default). "
            "It answers 202 with progress until the file is ready."
        },
    )


class DownloadQuerySchema(Schema):
    token = fields.String(
        required=True, validate=validate.Length(min=1, max=512), metadata={"description": "The link's signature"}
    )


class ExportProgressSchema(Schema):
    id = fields.String()
    status = fields.String(metadata={"description": "queued, running, done or failed"})
    rows_done = fields.Integer()
    rows_total = fields.Integer(allow_none=True, metadata={"description": "Known once the worker has counted"})
    progress = fields.Integer(allow_none=True, metadata={"description": "Percent of rows written"})


class ExportSchema(ExportProgressSchema):
    report = fields.String()
    format = fields.String()
    error = fields.String(allow_none=True, metadata={"description": "Why it failed"})
    file_name = fields.String(allow_none=True)
    file_size = fields.Integer(allow_none=True)
    created_at = BrokerTime()
    started_at = BrokerTime(allow_none=True)
    finished_at = BrokerTime(allow_none=True)
    expires_at = BrokerTime()
    download_url = fields.Method("get_download_url", metadata={"type": "string"})

    def get_download_url(self, export):
        from crm_app.exports.services import download_url

        return download_url(export)
