"""IB portal: profile with referral link and QR code (#55), clients (#51), their trading
accounts (#54). #50 (`/ib/kyc`) and #53 (`/ib/platforms`) live with KYC and trading."""

from flask import make_response, request
from flask.views import MethodView

from crm_app.common.api import Blueprint, current_user
from crm_app.ib import schemas, services

blp = Blueprint("ib", __name__, url_prefix="/api/v1/ib", description="IB portal: referral, clients, accounts")

QR_MAX_AGE = 3600


@blp.route("/profile")
class Profile(MethodView):
    @blp.login_required("ib")
    @blp.response(200, schemas.IbProfileSchema)
    def get(self):
        """The IB's referral code, link and QR code URL, with its KYC"""
        return services.ib_profile(current_user)


@blp.route("/referral-qr/<code>.png")
class ReferralQr(MethodView):
    @blp.response(200, content_type="image/png")
    def get(self, code):
        """The QR code (PNG) of an IB's referral link: public, it encodes only the public link"""
        link, png = services.referral_qr(code)
        response = make_response(png)
        response.mimetype = "image/png"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.cache_control.public = True
        response.cache_control.max_age = QR_MAX_AGE
        response.add_etag()
        # A browser or proxy that has it answers If-None-Match with 304.
        return response.make_conditional(request)


@blp.route("/clients")
class Clients(MethodView):
    @blp.login_required("ib")
    @blp.arguments(schemas.ClientQuerySchema, location="query")
    @blp.response(200, schemas.ClientListSchema)
    def get(self, args):
        """IB的Client列表 The IB's clients: its own (`scope=direct`, default) or its whole tree (`all`)"""
        page, size = args.pop("page"), args.pop("size")
        rows, total = services.list_clients(current_user, args, page, size)
        return {"list": rows, "total": total}


@blp.route("/client-trading-accounts")
class ClientTradingAccounts(MethodView):
    @blp.login_required("ib")
    @blp.arguments(schemas.ClientAccountQuerySchema, location="query")
    @blp.response(200, schemas.ClientAccountListSchema)
    def get(self, args):
        """查询客户交易账户列表 Trading accounts of the IB's clients, with figures from the trading server

        `scope=all` (default) covers every client below the IB; `direct` its own clients.
        When a server cannot answer, the last known figures are shown with `figures_read_at`.
        """
        page, size = args.pop("page"), args.pop("size")
        rows, total = services.list_client_accounts(current_user, args, page, size)
        return {"list": rows, "total": total}
