from marshmallow import fields, validate

from crm_app.auth.models import USER_STATUSES
from crm_app.common.schemas import BrokerTime, Money, PageQuerySchema, Schema
from crm_app.ib.services import KYC_FILTERS, SCOPES
from crm_app.kyc.schemas import KycSchema

# #55 ------------------------------------------------------------------------------------


class IbProfileSchema(KycSchema):
    """The IB's referral code, link and QR code, with its KYC (the same shape as #50)."""

    qr_code_url = fields.String(
        data_key="QRCodeURL",
        metadata={"description": "A PNG QR code of `ReferralLink`, public (no token needed)"},
    )
    referral_code = fields.String(data_key="ReferralCode", metadata={"description": "The IB's invitation code"})
    referral_link = fields.String(
        data_key="ReferralLink",
        metadata={"description": "The public registration page with the code (`invite_code` of #29)"},
    )


# #51 ------------------------------------------------------------------------------------

# PostgreSQL text cannot hold NUL: refuse it here (422) rather than fail in the database.
NO_NUL = validate.Regexp(r"^[^\x00]*$", error="Must not contain NUL characters.")
MAX_ID = 2**31 - 1


def text_filter(max_length, description):
    return fields.String(
        validate=validate.And(validate.Length(max=max_length), NO_NUL), metadata={"description": description}
    )


SCOPE_DOC = "`direct`: the IB's own clients; `all`: everyone below the IB, sub-IBs' clients included"


class ClientQuerySchema(PageQuerySchema):
    client_user_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID), metadata={"description": "客户用户ID"})
    kyc_status = fields.String(
        validate=validate.OneOf(KYC_FILTERS),
        metadata={
            "description": "`approved` (已验证); `disapproved` (未验证: anything not approved); "
            "or one KYC status: `filling`, `pending`, `rejected`"
        },
    )
    status = fields.String(validate=validate.OneOf(USER_STATUSES), metadata={"description": "用户状态"})
    email = text_filter(254, "邮箱 (partial, any case)")
    client_name = text_filter(200, "姓名 (partial, any case, first and last name)")
    scope = fields.String(load_default="direct", validate=validate.OneOf(SCOPES), metadata={"description": SCOPE_DOC})


class ClientSchema(Schema):
    account = fields.String(metadata={"description": "The client's sign-in account (its email)"})
    client_id = fields.Integer(metadata={"description": "The client's user id (a client is a user)"})
    client_user_id = fields.Integer()
    created_at = BrokerTime(metadata={"description": "Registration time"})
    email = fields.String()
    first_name = fields.String()
    full_name = fields.String()
    kyc_status = fields.String(metadata={"description": "The KYC's status: filling, pending, approved, rejected"})
    last_name = fields.String()
    latest_trade_time = BrokerTime(
        allow_none=True, metadata={"description": "The client's latest trade (synced deals); null: none yet"}
    )
    source = fields.String(
        metadata={"description": "`direct`: the caller's own client; `sub_ib`: a client of a sub-IB below it"}
    )
    status = fields.String(metadata={"description": "enabled or disabled"})
    updated_at = BrokerTime()
    user_type = fields.String(metadata={"description": "`client`, or `ib` for a sub-IB (an IB is a client too)"})
    ib_user_id = fields.Integer(metadata={"description": "The client's own IB"})
    ib_user_name = fields.String(metadata={"description": "The client's own IB's name (or email)"})
    level = fields.Integer(metadata={"description": "Depth below the caller: 1 = its own client"})


class ClientListSchema(Schema):
    list = fields.List(fields.Nested(ClientSchema))
    total = fields.Integer()


# #54 ------------------------------------------------------------------------------------


class ClientAccountQuerySchema(PageQuerySchema):
    user_name = text_filter(200, "姓名 (partial, any case; name or email)")
    account_id = fields.String(
        validate=validate.Regexp(r"^[0-9]{1,18}$", error="A trading account login (digits)."),
        metadata={"description": "交易账户在MT4的ID: the login on the trading server"},
    )
    trading_account_type_name = text_filter(64, "交易账号类型名称 (exact, any case)")
    client_user_id = fields.Integer(
        validate=validate.Range(min=1, max=MAX_ID), metadata={"description": "One client's accounts"}
    )
    is_demo = fields.Boolean()
    scope = fields.String(
        load_default="all",
        validate=validate.OneOf(SCOPES),
        metadata={"description": "`all` (default): every client below the IB; `direct`: its own clients only"},
    )


class ClientAccountSchema(Schema):
    account_id = fields.String(metadata={"description": "The login on the trading server"})
    balance = Money()
    credit = Money()
    equity = Money()
    id = fields.Integer()
    leverage = fields.Integer()
    margin_level = Money()
    trading_account_type_name = fields.String()
    trading_platform = fields.String()
    trading_server_name = fields.String()
    user_name = fields.String()
    client_user_id = fields.Integer()
    currency = fields.String()
    is_demo = fields.Boolean()
    figures_read_at = BrokerTime(
        allow_none=True,
        metadata={"description": "When the figures were read from the trading server (older: it could not answer)"},
    )


class ClientAccountListSchema(Schema):
    list = fields.List(fields.Nested(ClientAccountSchema))
    total = fields.Integer()
