"""Sign-up, sign-in, tokens, email codes, captcha check, the caller's permissions."""

from flask import jsonify
from flask.views import MethodView
from flask_jwt_extended import current_user as refresh_token_user
from flask_jwt_extended import get_jwt, verify_jwt_in_request

from crm_app.auth import otp, schemas, services
from crm_app.broker.services import menu_tree, permissions_for
from crm_app.common.api import Blueprint, current_token_claims, current_user
from crm_app.common.context import client_info_from_request
from crm_app.common.schemas import EmptySchema

blp = Blueprint("auth", __name__, url_prefix="/api/v1", description="Sign-in, tokens and permissions")


def token_answer(user, tokens):
    return {**tokens, "user_info": user}


@blp.route("/auth/login")
class Login(MethodView):
    @blp.arguments(schemas.CaptchaHeadersSchema, location="headers")
    @blp.arguments(schemas.LoginSchema)
    @blp.response(200, schemas.TokenSchema)
    @blp.error_responses(401, 403, 429, 503)
    def post(self, headers, body):
        """登录 Sign in

        When captcha is enabled, the Tencent captcha ticket goes in `Captcha-Token`
        and its random string in `Captcha-Randstr`; it is also asked for (422
        `captcha_required`) after repeated failures for one account from several
        addresses. Failed attempts are throttled per (email, address) pair and per
        address (429 with `Retry-After`). A user with two-factor sign-in on sends
        `otp_code` too: missing is 422 `otp_required`, wrong or reused 422 `otp_invalid`,
        and both count as failed attempts.
        """
        captcha = {"ticket": headers.get("captcha_token"), "randstr": headers.get("captcha_randstr")}
        user, tokens = services.login(
            body["email"], body["password"], client_info_from_request(), captcha, otp_code=body.get("otp_code")
        )
        return token_answer(user, tokens)


@blp.route("/auth/register")
class Register(MethodView):
    @blp.arguments(schemas.RegisterSchema)
    @blp.response(201, schemas.TokenSchema)
    def post(self, body):
        """注册Client用户 Register a client

        `email_code` (scene `register`) is required when the broker requires it;
        `invite_code` puts the new client under that IB.
        """
        user, tokens = services.register_client(
            body["email"],
            body["password"],
            client_info_from_request(),
            email_code=body.get("email_code"),
            invite_code=body.get("invite_code"),
        )
        return token_answer(user, tokens)


@blp.route("/auth/refresh")
class Refresh(MethodView):
    @blp.response(200, schemas.RefreshAnswerSchema)
    @blp.doc(security=[{"bearerAuth": []}])
    def post(self):
        """New access token from a refresh token (sent as the bearer token)"""
        verify_jwt_in_request(refresh=True)
        services.ensure_enabled(refresh_token_user)
        return services.refresh_access_token(refresh_token_user, get_jwt())


@blp.route("/auth/logout")
class Logout(MethodView):
    @blp.login_required(otp_enrolment=True)
    @blp.response(204)
    def post(self):
        """Sign out: revoke this sign-in's access and refresh tokens"""
        services.logout(current_user, current_token_claims(), client_info_from_request())


@blp.route("/auth/password")
class ChangePassword(MethodView):
    @blp.login_required()
    @blp.arguments(schemas.ChangePasswordSchema)
    @blp.response(200, EmptySchema)
    def post(self, body):
        """修改密码 Change own password

        Revokes every token issued before it, this one included: sign in again.
        """
        services.change_password(
            current_user,
            body["old_password"],
            body["new_password"],
            client_info_from_request(),
            email_code=body.get("email_code"),
        )
        return {}


@blp.route("/auth/email-code")
class EmailCode(MethodView):
    @blp.login_optional()
    @blp.arguments(schemas.EmailCodeRequestSchema)
    @blp.response(200, schemas.EmailCodeAnswerSchema)
    @blp.error_responses(429)
    def post(self, body):
        """发送邮箱验证码 Send a 6-digit email code for a scene

        Public; the bearer token is optional. A signed-in caller asking for `withdrawal`,
        `transfer` or `password_change` may leave `email` out: the code goes to their own
        address (another address is a 422 `email_not_yours`). `register`, and any scene
        without a token, need `email` (422 naming it); the answer is the same whether or
        not the address has an account. Asking again before `can_resend_at` is a 429.
        `received_at` is the client's clock; one far from the server's is refused.
        """
        return services.request_email_code(
            body.get("email"),
            body["scene"],
            body["received_at"],
            client_info_from_request(),
            caller=current_user._get_current_object(),
        )


@blp.route("/captcha/verify")
class CaptchaVerify(MethodView):
    @blp.arguments(schemas.CaptchaVerifySchema)
    @blp.response(200, schemas.CaptchaVerifyAnswerSchema)
    @blp.error_responses(503)
    def post(self, body):
        """腾讯验证码验证 Check a Tencent captcha ticket"""
        return {
            "is_valid": services.verify_captcha_for_app(
                body["app_id"], body["ticket"], body["rand_str"], body["user_ip"]
            )
        }


@blp.route("/auth/permissions")
class Permissions(MethodView):
    @blp.login_required(otp_enrolment=True)
    @blp.response(200, schemas.PermissionsSchema)
    def get(self):
        """The caller's `actions` map and `menus` tree"""
        return permissions_for(current_user.user_type)


@blp.route("/client/permissions")
class ClientPermissions(MethodView):
    @blp.login_required("client")
    @blp.response(200, schemas.PermissionsSchema)
    def get(self):
        """The client portal's `actions` and `menus`"""
        return permissions_for("client")


@blp.route("/menus")
class Menus(MethodView):
    @blp.login_required()
    @blp.response(200, schemas.MenuListSchema)
    def get(self):
        """The menu tree for the caller's user type"""
        # Every page load asks for it: the tree is built as plain JSON values in the
        # documented shape already (a test compares it with the schema's dump).
        return jsonify({"list": menu_tree(current_user.user_type)})


@blp.route("/auth/2fa/setup")
class TwoFactorSetup(MethodView):
    @blp.login_required(otp_enrolment=True)
    @blp.response(200, schemas.OtpSetupAnswerSchema)
    @blp.error_responses(409)
    def post(self):
        """Start two-factor enrolment: a TOTP secret, its `otpauth://` URI and QR code

        Asking again before confirming replaces the secret. 409 `otp_already_enabled`
        once it is on.
        """
        return otp.start_enrolment(current_user, client_info_from_request())


@blp.route("/auth/2fa/confirm")
class TwoFactorConfirm(MethodView):
    @blp.login_required(otp_enrolment=True)
    @blp.arguments(schemas.OtpConfirmSchema)
    @blp.response(200, schemas.OtpRecoveryCodesSchema)
    @blp.error_responses(409)
    def post(self, body):
        """Turn two-factor sign-in on with a first code; answers the recovery codes once

        An admin whose token could reach only these routes gets a full one from
        `POST /auth/refresh` or a new sign-in.
        """
        return otp.confirm_enrolment(current_user, body["otp_code"], client_info_from_request())


@blp.route("/auth/2fa")
class TwoFactor(MethodView):
    @blp.login_required(otp_enrolment=True)
    @blp.response(200, schemas.OtpStatusSchema)
    def get(self):
        """Two-factor sign-in: on, pending, or required of the caller"""
        return otp.status(current_user)

    @blp.login_required()
    @blp.arguments(schemas.OtpDisableSchema)
    @blp.response(204)
    @blp.error_responses(409)
    def delete(self, body):
        """Remove two-factor sign-in: the password and a current or recovery code"""
        otp.disable(current_user, body["password"], body["otp_code"], client_info_from_request())
