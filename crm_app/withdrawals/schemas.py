from decimal import Decimal

from marshmallow import ValidationError, fields, pre_load, validate, validates_schema

from crm_app.broker.models import FUNDING_METHODS
from crm_app.common.schemas import BrokerTime, Computed, Money, PageQuerySchema, Schema, TimeFilter
from crm_app.funding.schemas import (
    CURRENCY_CODE,
    METHOD_DOC,
    BankTransferInfoSchema,
    CryptocurrencyInfoSchema,
    InternationalWireInfoSchema,
    decimal_rule,
    keep_used_info_only,
    refuse_hidden_characters,
)
from crm_app.funding.services import INFO_KEYS

HOLDER_DOC = (
    "The payee: your KYC legal name (absent or empty: taken from it). Another name is a 422 "
    "`payee_name_mismatch` unless the broker allows it; case, spacing, punctuation and the order "
    "of the name's parts do not matter"
)


def holder_name_field():
    return fields.String(
        allow_none=True,
        validate=[validate.Length(max=200), refuse_hidden_characters],
        metadata={"description": HOLDER_DOC},
    )


class WithdrawalBankInfoSchema(BankTransferInfoSchema):
    account_holder_name = holder_name_field()


class WithdrawalWireInfoSchema(InternationalWireInfoSchema):
    account_holder_name = holder_name_field()


class WithdrawalCryptoInfoSchema(CryptocurrencyInfoSchema):
    currency = fields.String(
        allow_none=True,
        validate=validate.Regexp(r"^([A-Za-z0-9]{2,16})?$", error=CURRENCY_CODE.error),
        metadata={"description": "Defaults to the top-level `currency` (absent, null or empty); must equal it"},
    )


class NewWithdrawalSchema(Schema):
    bank_transfer_info = fields.Nested(
        WithdrawalBankInfoSchema, allow_none=True, metadata={"description": "银行转账信息: with method bank_transfer"}
    )
    cryptocurrency_info = fields.Nested(
        WithdrawalCryptoInfoSchema,
        allow_none=True,
        metadata={"description": "加密货币信息: with method cryptocurrency"},
    )
    currency = fields.String(
        required=True,
        validate=CURRENCY_CODE,
        metadata={"description": "The currency paid out: one of the channel's `allowed_currencies`"},
    )
    email_code = fields.String(validate=validate.Length(max=16), metadata={"description": "Scene `withdrawal`"})
    exchange_rate = Money(
        required=True,
        places=6,
        validate=decimal_rule(low=Decimal(0), low_inclusive=False, places=6),
        metadata={"description": "Units of `currency` per unit of the account's currency (1 without conversion)"},
    )
    fee = Money(
        required=True,
        validate=decimal_rule(low=Decimal(0)),
        metadata={"description": "The channel's fee on withdrawal_amount: fixed + percent, half-up to cents"},
    )
    international_wire_info = fields.Nested(
        WithdrawalWireInfoSchema,
        allow_none=True,
        metadata={"description": "国际电汇信息: with method international_wire_transfer"},
    )
    method = fields.String(
        required=True, validate=validate.OneOf(FUNDING_METHODS), metadata={"description": METHOD_DOC}
    )
    payment_account_id = fields.Integer(
        allow_none=True,
        metadata={
            "description": "Not in the seed: one of your payout accounts (#31) of this method, "
            "instead of sending its info object"
        },
    )
    remark = fields.String(validate=validate.Length(max=255))
    remittance_amount = Money(
        required=True,
        validate=decimal_rule(low=Decimal(0)),
        metadata={"description": "(withdrawal_amount - fee) x exchange_rate, half-up to cents"},
    )
    remittance_id = fields.Integer(required=True, metadata={"description": "The withdrawal channel's id (#25)"})
    trading_account_id = fields.Integer(required=True)
    withdrawal_amount = Money(
        required=True,
        validate=decimal_rule(low=Decimal(0), low_inclusive=False),
        metadata={"description": "出金金额: what leaves the trading account, in its currency"},
    )

    @pre_load
    def keep_used_info_only(self, data, **kwargs):
        return keep_used_info_only(data, "method", saved_account_field="payment_account_id")

    @validates_schema
    def check_info_matches_method(self, data, **kwargs):
        method = data.get("method")
        if method not in INFO_KEYS:
            return
        from_account = data.get("payment_account_id") is not None
        errors = {}
        for key_method, key in INFO_KEYS.items():
            given = data.get(key) is not None
            if key_method != method and given:
                errors[key] = [f"Must be absent with method {method}."]
            elif key_method == method and given and from_account:
                errors[key] = ["Send either payment_account_id or this object, not both."]
            elif key_method == method and not given and not from_account:
                errors[key] = [f"Required with method {method} (or name a payout account in payment_account_id)."]
        if errors:
            raise ValidationError(errors)


class NewWithdrawalAnswerSchema(Schema):
    order_number = fields.String()
    audit_id = fields.Integer(attribute="review_item_id", metadata={"description": "Not in the seed: the review item"})
    status = fields.String(metadata={"description": "Not in the seed: the withdrawal's state (see #24)"})


class WithdrawalAccountSchema(Schema):
    account = Computed(lambda a: str(a.login))
    id = fields.Integer()
    server_name = Computed(lambda a: a.server.name)
    server_type = Computed(lambda a: a.server.server_type)


class WithdrawalSchema(Schema):
    amount = Money(metadata={"description": "What left the trading account, in account_currency"})
    client_remark = fields.String()
    currency = fields.String(metadata={"description": "The currency paid out"})
    icon = Computed(lambda w: w.channel.icon_url)
    id = fields.Integer()
    order_number = fields.String()
    remark = Computed(
        lambda w: w.review_item.remark if w.review_item else "", metadata={"description": "The back office's remark"}
    )
    remittance_name = Computed(lambda w: w.channel.name)
    source_trading_account = fields.Nested(WithdrawalAccountSchema, attribute="trading_account")
    status = fields.String(
        metadata={
            "description": "processing (money moving), auditing (held, waiting for review), approved (paid), "
            "disapproved (rejected and refunded), failed (see failure_reason)"
        }
    )
    submit_time = BrokerTime(attribute="created_at")
    # Not in the seed: the figures the client agreed to, and where the money goes.
    account_currency = fields.String()
    audit_id = fields.Integer(attribute="review_item_id", allow_none=True)
    exchange_rate = Money(places=6)
    failure_reason = fields.String(allow_none=True)
    fee = Money()
    method = fields.String()
    remittance_amount = Money()
    # Decrypted for the owner only (the service attaches `owner_view`); null for other methods.
    bank_transfer_info = fields.Nested(
        WithdrawalBankInfoSchema, attribute="owner_view.bank_transfer_info", allow_none=True
    )
    cryptocurrency_info = fields.Nested(
        WithdrawalCryptoInfoSchema, attribute="owner_view.cryptocurrency_info", allow_none=True
    )
    international_wire_info = fields.Nested(
        WithdrawalWireInfoSchema, attribute="owner_view.international_wire_info", allow_none=True
    )


class WithdrawalListSchema(Schema):
    list = fields.List(fields.Nested(WithdrawalSchema))
    total = fields.Integer()


class WithdrawalQuerySchema(PageQuerySchema):
    start_time = TimeFilter(label="Submitted at or after")
    end_time = TimeFilter(end=True, label="Submitted at or before")
