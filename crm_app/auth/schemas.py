from marshmallow import fields, pre_load, validate

from crm_app.auth.models import EMAIL_CODE_SCENES
from crm_app.common.schemas import Schema

Email = lambda **kw: fields.Email(validate=validate.Length(max=254), **kw)  # noqa: E731


class LoginSchema(Schema):
    email = Email(required=True)
    password = fields.String(required=True, validate=validate.Length(min=1, max=128), load_only=True)
    otp_code = fields.String(
        validate=validate.Length(max=32),
        load_only=True,
        metadata={"description": "For a user with two-factor sign-in on: a 6-digit TOTP code or a recovery code"},
    )


class CaptchaHeadersSchema(Schema):
    class Meta:
        # Every other header of the request is not ours to judge.
        unknown = "exclude"

    captcha_token = fields.String(data_key="Captcha-Token", validate=validate.Length(max=2048))
    captcha_action = fields.String(data_key="Captcha-Action", validate=validate.Length(max=64))
    captcha_randstr = fields.String(data_key="Captcha-Randstr", validate=validate.Length(max=128))


class UserInfoSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    first_name = fields.String()
    last_name = fields.String()
    full_name = fields.String()
    user_type = fields.String()


class TokenSchema(Schema):
    token = fields.String(metadata={"description": "Access token (short-lived): `Authorization: Bearer <token>`"})
    refresh_token = fields.String(metadata={"description": "Refresh token for `POST /api/v1/auth/refresh`"})
    user_info = fields.Nested(UserInfoSchema)


class RegisterSchema(Schema):
    email = Email(required=True)
    password = fields.String(required=True, validate=validate.Length(max=128), load_only=True)
    email_code = fields.String(
        validate=validate.Length(max=16), metadata={"description": "邮箱验证码 (scene register)"}
    )
    invite_code = fields.String(validate=validate.Length(max=32), metadata={"description": "An IB's referral code"})


class ChangePasswordSchema(Schema):
    old_password = fields.String(required=True, validate=validate.Length(max=128), load_only=True)
    new_password = fields.String(required=True, validate=validate.Length(max=128), load_only=True)
    email_code = fields.String(validate=validate.Length(max=16))


class EmailCodeRequestSchema(Schema):
    email = Email(
        metadata={
            "description": "The address to send the code to. Required for `register` and without a token; a "
            "signed-in caller may leave it out for `withdrawal`, `transfer` and `password_change` (the code goes "
            "to their own address), and may not name another address (422 `email_not_yours`)"
        }
    )
    received_at = fields.Integer(required=True, metadata={"description": "Client's Unix time in seconds"})
    scene = fields.String(required=True, validate=validate.OneOf(EMAIL_CODE_SCENES))

    @pre_load
    def blank_email_is_left_out(self, data, **kwargs):
        # A form's empty address field means "my own address", as if it were left out.
        if isinstance(data, dict) and (data.get("email") is None or data.get("email") == "") and "email" in data:
            data = {key: value for key, value in data.items() if key != "email"}
        return data


class EmailCodeAnswerSchema(Schema):
    can_resend_at = fields.Integer(metadata={"description": "Unix seconds: asking again before this is a 429"})
    expired_at = fields.Integer(metadata={"description": "Unix seconds: the code stops working"})


class RefreshAnswerSchema(Schema):
    token = fields.String()


class CaptchaVerifySchema(Schema):
    app_id = fields.Integer(required=True)
    rand_str = fields.String(required=True, validate=validate.Length(min=1, max=128))
    ticket = fields.String(required=True, validate=validate.Length(min=1, max=2048))
    user_ip = fields.String(required=True, validate=validate.Length(max=64))


class CaptchaVerifyAnswerSchema(Schema):
    is_valid = fields.Boolean()


class ActionSchema(Schema):
    methods = fields.Dict(keys=fields.String(), values=fields.Boolean())
    path = fields.String()
    title = fields.String()
    url = fields.String()


class MenuSchema(Schema):
    id = fields.Integer()
    parent_id = fields.Integer()
    key = fields.String()
    title = fields.String()
    path = fields.String()
    icon = fields.String()
    action = fields.String()
    desc = fields.String()
    sort_order = fields.Integer()
    status = fields.Integer()
    user_type = fields.String()
    children = fields.List(fields.Nested(lambda: MenuSchema()))


class PermissionsSchema(Schema):
    actions = fields.Dict(keys=fields.String(), values=fields.Nested(ActionSchema))
    menus = fields.List(fields.Nested(MenuSchema))


class MenuListSchema(Schema):
    list = fields.List(fields.Nested(MenuSchema))


OtpCode = lambda **kw: fields.String(  # noqa: E731
    validate=validate.Length(min=1, max=32),
    load_only=True,
    metadata={"description": "A 6-digit code from the authenticator app (or, where said, a recovery code)"},
    **kw,
)


class OtpStatusSchema(Schema):
    enabled = fields.Boolean(metadata={"description": "Two-factor sign-in is on"})
    pending = fields.Boolean(metadata={"description": "Set up, waiting for a first code to confirm it"})
    recovery_codes_left = fields.Integer()
    required = fields.Boolean(metadata={"description": "The broker requires it of this user (admins)"})


class OtpSetupAnswerSchema(Schema):
    secret = fields.String(metadata={"description": "Base32 secret, for typing into the app by hand"})
    otpauth_uri = fields.String(metadata={"description": "`otpauth://totp/...` URI (RFC 6238, SHA-1, 6 digits, 30 s)"})
    qr_png_base64 = fields.String(metadata={"description": "The URI as a QR code: a PNG image, base64-encoded"})


class OtpConfirmSchema(Schema):
    otp_code = OtpCode(required=True)


class OtpRecoveryCodesSchema(Schema):
    recovery_codes = fields.List(
        fields.String(), metadata={"description": "One-time codes for a lost authenticator: shown only this once"}
    )


class OtpDisableSchema(Schema):
    password = fields.String(required=True, validate=validate.Length(min=1, max=128), load_only=True)
    otp_code = OtpCode(required=True)
