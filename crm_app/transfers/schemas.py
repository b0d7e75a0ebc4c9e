from marshmallow import fields, validate

from crm_app.common.schemas import BrokerTime, Computed, Money, PageQuerySchema, Schema, TimeFilter


class NewTransferSchema(Schema):
    amount = Money(required=True, metadata={"description": '转账金额, e.g. "100.00"'})
    email_code = fields.String(validate=validate.Length(max=16), metadata={"description": "Scene `transfer`"})
    remark = fields.String(required=True, validate=validate.Length(max=255))
    source_trading_account_id = fields.Integer(required=True)
    target_trading_account_id = fields.Integer(required=True)


class TransferAnswerSchema(Schema):
    audit_id = fields.Integer(attribute="review_item_id")
    audit_status = fields.String(
        metadata={"description": "The review item's status: `approved` at once under the automatic limit"}
    )
    status = fields.String(metadata={"description": "The transfer's own state (processing, auditing, approved, ...)"})
    order_number = fields.String()


class TransferAccountSchema(Schema):
    account = Computed(lambda a: str(a.login))
    id = fields.Integer()
    server_name = Computed(lambda a: a.server.name)
    server_type = Computed(lambda a: a.server.server_type)


class TransferSchema(Schema):
    amount = Money()
    currency = fields.String()
    id = fields.Integer()
    order_number = fields.String()
    remark = fields.String()
    source_trading_account = fields.Nested(TransferAccountSchema, attribute="source_account")
    target_trading_account = fields.Nested(TransferAccountSchema, attribute="target_account")
    status = fields.String(
        metadata={"description": "processing, auditing (waits for review), approved, disapproved, failed"}
    )
    submit_time = BrokerTime(attribute="created_at")
    audit_id = fields.Integer(attribute="review_item_id", allow_none=True)
    failure_reason = fields.String(allow_none=True)


class TransferListSchema(Schema):
    list = fields.List(fields.Nested(TransferSchema))
    total = fields.Integer()


class TransferQuerySchema(PageQuerySchema):
    start_time = TimeFilter()
    end_time = TimeFilter(end=True)
