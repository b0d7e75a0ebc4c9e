from marshmallow import fields, validate

from crm_app.common.schemas import BrokerTime, Computed, Money, PageQuerySchema, Schema, TimeFilter


class NewDepositSchema(Schema):
    deposit_amount = Money(required=True, metadata={"description": "入金金额, in the account's currency"})
    remark = fields.String(validate=validate.Length(max=255))
    remittance_id = fields.Integer(required=True, metadata={"description": "The deposit channel's id (#20)"})
    trading_account_id = fields.Integer(required=True)


class PaymentInstructionsSchema(Schema):
    order_number = fields.String()
    pay_data = fields.String(metadata={"description": "JSON: the channel's payment details and this order's reference"})
    pay_type = fields.String()
    pay_url = fields.String()
    status = fields.String()


class SubmitDepositSchema(Schema):
    order_number = fields.String(required=True, validate=validate.Length(min=1, max=32))
    receipt_url = fields.String(
        required=True,
        validate=validate.Length(min=1, max=1024),
        metadata={"description": "The `url` answered by POST /api/v1/uploads"},
    )


class SubmitAnswerSchema(Schema):
    order_number = fields.String()
    status = fields.String()


class DepositAccountSchema(Schema):
    account = Computed(lambda a: str(a.login))
    id = fields.Integer()
    server_name = Computed(lambda a: a.server.name)
    server_type = Computed(lambda a: a.server.server_type)


class DepositSchema(Schema):
    amount = Money()
    fee = Money()
    client_remark = fields.String()
    currency = fields.String()
    icon = Computed(lambda d: d.channel.icon_url)
    id = fields.Integer()
    order_number = fields.String()
    pay_url = Computed(lambda d: d.channel.pay_url or "")
    remark = fields.String(metadata={"description": "The back office's remark"})
    remittance_name = Computed(lambda d: d.channel.name)
    server_name = Computed(lambda d: d.trading_account.server.name)
    server_type = Computed(lambda d: d.trading_account.server.server_type)
    status = fields.String(
        metadata={"description": "draft, expired, auditing, processing, approved, disapproved, failed"}
    )
    submit_time = BrokerTime(attribute="created_at")
    target_trading_account = fields.Nested(DepositAccountSchema, attribute="trading_account")


class DepositListSchema(Schema):
    list = fields.List(fields.Nested(DepositSchema))
    total = fields.Integer()


class DepositQuerySchema(PageQuerySchema):
    start_time = TimeFilter()
    end_time = TimeFilter(end=True)
