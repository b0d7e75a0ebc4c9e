from marshmallow import ValidationError, fields, validate, validates_schema

from crm_app.common.schemas import MAX_DB_ID, BrokerTime, Computed, Money, PageQuerySchema, Schema
from crm_app.trading.models import FUND_DIRECTIONS, PLATFORMS

# Logins are PostgreSQL `integer` columns.
LOGIN = validate.Range(min=1, max=MAX_DB_ID)

URL = lambda **kw: fields.String(validate=validate.Length(max=1024), **kw)  # noqa: E731


# Client side -----------------------------------------------------------------


class LeverageOptionSchema(Schema):
    id = fields.Integer()
    value = fields.Integer()


class AccountTypeSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    leverage_options = Computed(
        lambda t: [{"id": index, "value": value} for index, value in enumerate(t.leverage_options or [], start=1)],
        nested=LeverageOptionSchema,
        many=True,
    )
    trading_platform = fields.String(attribute="platform")
    is_demo = fields.Boolean()
    currency = fields.String()
    fund_direction = fields.String()


class AccountTypeListSchema(Schema):
    list = fields.List(fields.Nested(AccountTypeSchema))
    total = fields.Integer()


class AccountTypeQuerySchema(PageQuerySchema):
    trading_platform = fields.String(required=True, validate=validate.OneOf(PLATFORMS))
    is_demo = fields.Boolean()


class NewAccountSchema(Schema):
    currency = fields.String(
        required=True,
        validate=validate.Length(min=3, max=8),
        metadata={"description": "账户货币 (the account type's currency)"},
    )
    leverage = fields.Integer(required=True, validate=validate.Range(min=1, max=5000))
    observe_password = fields.String(
        load_only=True,
        validate=validate.Length(max=64),
        metadata={"description": "观摩密码 investor (read-only) password"},
    )
    password = fields.String(required=True, load_only=True, validate=validate.Length(max=64))
    trading_account_type_id = fields.Integer(required=True)
    trading_platform = fields.String(required=True, validate=validate.OneOf(PLATFORMS))


class OpenAccountSchema(NewAccountSchema):
    is_demo = fields.Boolean(required=True)


class OpenAccountAnswerSchema(Schema):
    id = fields.Integer(
        allow_none=True,
        metadata={
            "description": "The trading account's id (for #46 and every `trading_account_id`): a demo "
            "account's at once; null while a live application waits for review"
        },
    )
    application_id = fields.Integer(
        metadata={"description": "Not in the seed: the account application's id (never a trading account's)"}
    )
    status = fields.String(metadata={"description": "`approved` (account open) or `pending` (waits for review)"})
    trading_account_id = fields.Integer(
        allow_none=True, metadata={"description": "Not in the seed: the same as `id`, null while pending"}
    )


class ApplicationAnswerSchema(Schema):
    application_account_id = fields.Integer()


class TradingAccountSchema(Schema):
    id = fields.Integer()
    account = Computed(lambda a: str(a.login))
    balance = Money()
    credit = Money()
    equity = Money()
    margin = Money()
    margin_free = Money()
    margin_level = Money()
    currency = fields.String()
    is_demo = fields.Boolean()
    leverage = fields.Integer()
    # The seed lists the passwords in the answer; they are write-only and never served.
    password = fields.Constant("", metadata={"type": "string", "description": "Write-only: always empty"})
    observe_password = fields.Constant("", metadata={"type": "string", "description": "Write-only: always empty"})
    server_name = Computed(lambda a: a.server.name)
    server_type = Computed(lambda a: a.server.server_type)
    trading_account_type_name = Computed(lambda a: a.account_type.name)
    trading_platform = Computed(lambda a: a.server.platform)
    figures_read_at = BrokerTime(
        allow_none=True, metadata={"description": "When the figures were read from the trading server"}
    )


class TradingAccountListSchema(Schema):
    list = fields.List(fields.Nested(TradingAccountSchema))
    total = fields.Integer()


class TradingAccountQuerySchema(PageQuerySchema):
    is_demo = fields.Boolean()


class ChangeTradingPasswordSchema(Schema):
    id = fields.Integer(required=True)
    password = fields.String(required=True, load_only=True, validate=validate.Length(max=64))
    type = fields.String(required=True, validate=validate.OneOf(("observe", "trade")))


class BalanceQuerySchema(Schema):
    type = fields.List(
        fields.String(validate=validate.OneOf(FUND_DIRECTIONS)),
        required=True,
        metadata={
            "description": "Fund directions: deposit → deposit_only,normal; withdrawal → withdrawal_only,normal. "
            "Sent as `type=a&type=b`, `type[]=a&type[]=b` or `type=a,b`. Only live accounts are listed: "
            "money never moves through a demo account, whatever its type's direction"
        },
    )


class BalanceSchema(Schema):
    balance = Money()
    server_name = Computed(lambda a: a.server.name)
    server_type = Computed(lambda a: a.server.server_type)
    trading_account = Computed(lambda a: str(a.login))
    trading_account_id = fields.Integer(attribute="id")


class BalanceListSchema(Schema):
    list = fields.List(fields.Nested(BalanceSchema))
    total = fields.Integer()


class PlatformSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    description = fields.String(validate=validate.Length(max=2000))
    icon_url = URL()
    logo_url = URL()
    windows_download_url = URL()
    macos_download_url = URL()
    ios_download_url = URL()
    android_download_url = URL()
    sort_order = fields.Integer(validate=validate.Range(min=0, max=100000))
    created_at = BrokerTime(dump_only=True)
    updated_at = BrokerTime(dump_only=True)


class PlatformUpdateSchema(PlatformSchema):
    name = fields.String(validate=validate.Length(min=1, max=64))


class PlatformListSchema(Schema):
    list = fields.List(fields.Nested(PlatformSchema))
    total = fields.Integer()


# Admin side -------------------------------------------------------------------


class TradingServerSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    platform = fields.String(required=True, validate=validate.OneOf(PLATFORMS))
    is_demo = fields.Boolean(required=True)
    connector = fields.String(validate=validate.OneOf(("mt5_webapi",)), load_default="mt5_webapi")
    base_url = fields.String(required=True, validate=validate.Regexp(r"^https?://", error="An http(s) URL."))
    manager_login = fields.Integer(required=True, validate=LOGIN)
    manager_password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=64))
    timezone = fields.String(load_default="UTC", validate=validate.Length(max=64))
    next_login = fields.Integer(
        required=True,
        validate=LOGIN,
        metadata={"description": "First login the CRM hands out on this server"},
    )
    last_login = fields.Integer(required=True, validate=LOGIN)
    enabled = fields.Boolean(load_default=True)
    server_type = fields.String(dump_only=True)
    free_logins = fields.Method(
        "login_range_free", dump_only=True, metadata={"type": "integer", "description": "Logins left to hand out"}
    )
    login_range_low = fields.Method(
        "login_range_is_low",
        dump_only=True,
        metadata={
            "type": "boolean",
            "description": "Fewer free logins than LOGIN_RANGE_WARN_RATIO of the range: extend `last_login`",
        },
    )

    def login_range_free(self, server):
        return max(0, server.last_login - server.next_login + 1)

    def login_range_is_low(self, server):
        from crm_app.trading.services import login_range_state

        return login_range_state(server)["low"]

    @validates_schema
    def check_range(self, data, **kwargs):
        if "next_login" in data and "last_login" in data and data["next_login"] > data["last_login"]:
            raise ValidationError("Must not be below next_login.", field_name="last_login")


class TradingServerUpdateSchema(TradingServerSchema):
    name = fields.String(validate=validate.Length(min=1, max=64))
    platform = fields.String(validate=validate.OneOf(PLATFORMS))
    is_demo = fields.Boolean()
    connector = fields.String(validate=validate.OneOf(("mt5_webapi",)))
    base_url = fields.String(validate=validate.Regexp(r"^https?://", error="An http(s) URL."))
    manager_login = fields.Integer(validate=LOGIN)
    manager_password = fields.String(load_only=True, validate=validate.Length(min=1, max=64))
    timezone = fields.String(validate=validate.Length(max=64))
    next_login = fields.Integer(validate=LOGIN)
    last_login = fields.Integer(validate=LOGIN)
    enabled = fields.Boolean()


class AdminAccountTypeSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    server_id = fields.Integer(required=True)
    mt_group = fields.String(required=True, validate=validate.Length(min=1, max=64))
    leverage_options = fields.List(
        fields.Integer(validate=validate.Range(min=1, max=5000)), required=True, validate=validate.Length(min=1, max=30)
    )
    fund_direction = fields.String(load_default="normal", validate=validate.OneOf(FUND_DIRECTIONS))
    currency = fields.String(load_default="USD", validate=validate.Length(min=3, max=8))
    allowed_user_types = fields.List(
        fields.String(validate=validate.OneOf(("client", "ib"))), load_default=lambda: ["client", "ib"]
    )
    enabled = fields.Boolean(load_default=True)
    sort_order = fields.Integer(load_default=0, validate=validate.Range(min=0, max=100000))
    platform = fields.String(dump_only=True)
    is_demo = fields.Boolean(dump_only=True)


class AdminAccountTypeUpdateSchema(AdminAccountTypeSchema):
    name = fields.String(validate=validate.Length(min=1, max=64))
    server_id = fields.Integer()
    mt_group = fields.String(validate=validate.Length(min=1, max=64))
    leverage_options = fields.List(
        fields.Integer(validate=validate.Range(min=1, max=5000)), validate=validate.Length(min=1, max=30)
    )
    fund_direction = fields.String(validate=validate.OneOf(FUND_DIRECTIONS))
    currency = fields.String(validate=validate.Length(min=3, max=8))
    allowed_user_types = fields.List(fields.String(validate=validate.OneOf(("client", "ib"))))
    enabled = fields.Boolean()
    sort_order = fields.Integer(validate=validate.Range(min=0, max=100000))


# The admin's check of a trading server ------------------------------------------


class TradingServerCheckRequestSchema(Schema):
    login = fields.Integer(
        validate=LOGIN,
        metadata={
            "description": "A login to read in the `user_read` step (a test account); omitted, the lowest "
            "login the CRM knows on the server, else the manager's own"
        },
    )


class LoginProbeSchema(Schema):
    login = fields.Integer()
    state = fields.String(metadata={"description": "`free` (not on the server) or `taken`"})


class TradingServerCheckStepSchema(Schema):
    step = fields.String(
        metadata={"description": "`handshake`, `server_time`, `user_read` or `login_range`, in that order"}
    )
    ok = fields.Boolean(metadata={"description": "The step worked (false when skipped)"})
    skipped = fields.Boolean(metadata={"description": "Not run because the handshake failed"})
    detail = fields.String(metadata={"description": "What was found, or what failed and what to look at"})
    elapsed_ms = fields.Integer(metadata={"description": "How long the step took"})
    logins = fields.List(
        fields.Nested(LoginProbeSchema),
        metadata={"description": "`login_range` only: the probed logins (the next few and the last)"},
    )


class TradingServerCheckSchema(Schema):
    server_id = fields.Integer()
    ok = fields.Boolean(metadata={"description": "Every step worked"})
    steps = fields.List(fields.Nested(TradingServerCheckStepSchema))
