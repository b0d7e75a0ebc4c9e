from marshmallow import fields, validate

from crm_app.common.schemas import BrokerTime, Money, PageQuerySchema, Schema

REVIEW_FILTER = ("all", "auditing", "approved", "disapproved")
TRANSFER_FILTER = ("all", "pending", "auditing", "approved", "disapproved")
STATUS_DOC = "The review status: pending, auditing, approved, disapproved"


class TimeRangeSchema(Schema):
    start_time = BrokerTime(metadata={"description": "YYYY-MM-DD HH:MM:SS in the broker's timezone"})
    end_time = BrokerTime(metadata={"description": "YYYY-MM-DD HH:MM:SS in the broker's timezone"})


class ExportFormatSchema(Schema):
    format = fields.String(load_default="csv", validate=validate.OneOf(("csv", "xlsx", "pdf")))


class DepositReportQuerySchema(PageQuerySchema, TimeRangeSchema):
    status = fields.String(
        required=True,
        validate=validate.OneOf(REVIEW_FILTER),
        metadata={"description": "all; auditing (not decided yet); approved; disapproved"},
    )


class DepositReportRowSchema(Schema):
    account = fields.String()
    amount = Money()
    auditor_name = fields.String()
    currency = fields.String()
    fee = Money()
    id = fields.Integer()
    method = fields.String()
    order_number = fields.String()
    server_name = fields.String()
    server_type = fields.String()
    status = fields.String(metadata={"description": STATUS_DOC})
    submit_time = BrokerTime()
    user_name = fields.String()


class DepositReportSchema(Schema):
    list = fields.List(fields.Nested(DepositReportRowSchema))
    total = fields.Integer()


class WithdrawalReportQuerySchema(PageQuerySchema, TimeRangeSchema):
    status = fields.String(
        required=True,
        validate=validate.OneOf(REVIEW_FILTER),
        metadata={"description": "all; auditing (not decided yet); approved; disapproved"},
    )
    method = fields.String(
        required=True,
        validate=validate.OneOf(("all", "bank_transfer", "international_wire_transfer", "cryptocurrency")),
    )


class TransferReportQuerySchema(PageQuerySchema, TimeRangeSchema):
    order_number = fields.String(validate=validate.Length(max=32))
    status = fields.String(required=True, validate=validate.OneOf(TRANSFER_FILTER))


class ReportAccountSchema(Schema):
    account = fields.String()
    id = fields.Integer()
    server_name = fields.String()
    server_type = fields.String()


class TransferReportRowSchema(Schema):
    id = fields.Integer()
    amount = Money()
    currency = fields.String()
    order_number = fields.String()
    source_trading_account = fields.Nested(ReportAccountSchema)
    target_trading_account = fields.Nested(ReportAccountSchema)
    status = fields.String(metadata={"description": STATUS_DOC})
    submit_time = BrokerTime()
    user_name = fields.String()


class TransferReportSchema(Schema):
    list = fields.List(fields.Nested(TransferReportRowSchema))
    total = fields.Integer()
