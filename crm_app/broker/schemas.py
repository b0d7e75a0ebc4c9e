from marshmallow import fields, validate

from crm_app.broker.models import EVERY_METHOD, FUNDING_METHODS
from crm_app.common.schemas import Computed, Schema, i18n_text_field

URL = lambda **kw: fields.String(validate=validate.Length(max=1024), **kw)  # noqa: E731
LAYOUTS = ("center", "left", "right", "split")


class EmailCodeRequiredSchema(Schema):
    register = fields.Boolean()
    withdrawal = fields.Boolean()
    transfer = fields.Boolean()
    password_change = fields.Boolean()


class BrokerConfigSchema(Schema):
    broker_name_i18n = i18n_text_field()
    company_logo_url = URL()
    email = fields.String(validate=validate.Length(max=254))
    login_page_logo_url = URL()
    support_phone = fields.String(validate=validate.Length(max=64))
    timezone = fields.String(
        validate=validate.Length(max=64), metadata={"description": "IANA name, e.g. Asia/Shanghai"}
    )
    watermark_logo_url = URL()
    email_code_required = fields.Nested(
        EmailCodeRequiredSchema, metadata={"description": "Scenes that need an email code (not in the seed)"}
    )
    withdrawal_payee_must_match_kyc = fields.Boolean(
        metadata={
            "description": "Not in the seed: a bank or wire withdrawal's payee name must be the client's "
            "KYC legal name (default true)"
        }
    )


class AdminBrokerConfigSchema(BrokerConfigSchema):
    require_admin_otp = fields.Boolean(
        metadata={"description": "Admins must turn on two-factor sign-in (TOTP) before anything else"}
    )


class BrokerConfigUpdateSchema(AdminBrokerConfigSchema):
    timezone = fields.String(validate=[validate.Length(max=64), lambda tz: validate_timezone(tz)])


def validate_timezone(name):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        from marshmallow import ValidationError

        raise ValidationError("Unknown time zone (use an IANA name such as Asia/Shanghai).") from None


def _login_page_fields():
    result = {}
    for portal in ("admin", "client", "ib"):
        result[f"{portal}_login_bg_image_url"] = URL()
        result[f"{portal}_login_copy_i18n"] = i18n_text_field()
        result[f"{portal}_login_layout"] = fields.String(validate=validate.OneOf(LAYOUTS))
    return result


LoginPageSchema = Schema.from_dict(_login_page_fields(), name="LoginPage")


class CurrencyNameSchema(Schema):
    en = fields.String()
    zh = fields.String()


class CurrencySchema(Schema):
    code = fields.String()
    name = Computed(lambda currency: {"en": currency.name_en, "zh": currency.name_zh}, nested=CurrencyNameSchema)


class CurrencyListSchema(Schema):
    list = fields.List(fields.Nested(CurrencySchema))
    total = fields.Integer()


class CurrencyQuerySchema(Schema):
    method = fields.String(
        load_default="all",
        validate=validate.OneOf(EVERY_METHOD + FUNDING_METHODS),
        metadata={
            "description": "出入金方式: all (or normal, its synonym in the seed's text) for every currency, "
            "bank_transfer, international_wire_transfer, cryptocurrency"
        },
    )


class AdminCurrencySchema(Schema):
    id = fields.Integer(dump_only=True)
    code = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9]{2,16}$"))
    name_en = fields.String(required=True, validate=validate.Length(min=1, max=64))
    name_zh = fields.String(required=True, validate=validate.Length(min=1, max=64))
    methods = fields.List(fields.String(validate=validate.OneOf(FUNDING_METHODS)), load_default=list)
    enabled = fields.Boolean(load_default=True)
    sort_order = fields.Integer(load_default=0, validate=validate.Range(min=0, max=100000))


class AdminCurrencyUpdateSchema(AdminCurrencySchema):
    """PUT replaces the fields it names; the others stay."""

    code = fields.String(validate=validate.Regexp(r"^[A-Za-z0-9]{2,16}$"))
    name_en = fields.String(validate=validate.Length(min=1, max=64))
    name_zh = fields.String(validate=validate.Length(min=1, max=64))
    methods = fields.List(fields.String(validate=validate.OneOf(FUNDING_METHODS)))
    enabled = fields.Boolean()
    sort_order = fields.Integer(validate=validate.Range(min=0, max=100000))


class AdminCurrencyListSchema(Schema):
    list = fields.List(fields.Nested(AdminCurrencySchema))
    total = fields.Integer()
