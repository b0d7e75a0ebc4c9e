"""Trading accounts (client portal), platforms, and their admin configuration."""

from flask.views import MethodView
from sqlalchemy import select

from crm_app.common import crypto
from crm_app.common.api import Blueprint, current_user
from crm_app.common.context import client_info_from_request
from crm_app.common.crud import Resource, register_admin_crud
from crm_app.common.errors import ValidationFailed
from crm_app.common.schemas import EmptySchema
from crm_app.extensions import db
from crm_app.trading import schemas, server_check, services
from crm_app.trading.models import AccountType, Platform, TradingServer

blp = Blueprint("trading", __name__, url_prefix="/api/v1", description="Trading accounts and platforms")
admin_blp = Blueprint(
    "trading_admin",
    __name__,
    url_prefix="/api/v1/admin",
    description="Back office: trading servers, account types, platforms",
)


@blp.route("/client/trading-account-types")
class AccountTypes(MethodView):
    @blp.login_required("client")
    @blp.arguments(schemas.AccountTypeQuerySchema, location="query")
    @blp.response(200, schemas.AccountTypeListSchema)
    def get(self, args):
        """查询可用交易账号类型列表 Account types open to the caller (live ones need approved KYC)"""
        rows, total = services.list_account_types(current_user, **args)
        return {"list": rows, "total": total}


@blp.route("/client/trading-accounts")
class TradingAccounts(MethodView):
    @blp.login_required("client")
    @blp.arguments(schemas.TradingAccountQuerySchema, location="query")
    @blp.response(200, schemas.TradingAccountListSchema)
    def get(self, args):
        """查询交易账号列表 Own trading accounts, with figures from the trading server

        When a server cannot answer, the last known figures are shown with `figures_read_at`.
        """
        rows, total = services.list_own_accounts(current_user, **args)
        return {"list": rows, "total": total}

    @blp.login_required("client")
    @blp.arguments(schemas.OpenAccountSchema)
    @blp.response(201, schemas.OpenAccountAnswerSchema)
    @blp.error_responses(404, 503)
    def post(self, body):
        """申请交易账号 Open a demo account at once, or apply for a live one (goes to review)

        `id` is the trading account's id, the one #46 (`GET /api/v1/client/trading-accounts/{id}`)
        takes: a demo account's at once; null for a live application, whose account exists only
        once the back office approves it (it then appears in #48). `application_id` is the
        application's id, never an account's.
        """
        is_demo = body.pop("is_demo")
        application, account = services.apply_for_account(current_user, body, client_info_from_request(), is_demo)
        return services.opening_answer(application, account)


@blp.route("/client/account-applications")
class AccountApplications(MethodView):
    @blp.login_required("client")
    @blp.arguments(schemas.NewAccountSchema)
    @blp.response(201, schemas.ApplicationAnswerSchema)
    def post(self, body):
        """创建开户申请 Apply for a live trading account (goes to review)"""
        application, _ = services.apply_for_account(current_user, body, client_info_from_request(), is_demo=False)
        return {"application_account_id": application.id}


@blp.route("/client/trading-accounts/<int:account_id>")
class TradingAccount(MethodView):
    @blp.login_required("client")
    @blp.response(200, schemas.TradingAccountSchema)
    def get(self, account_id):
        """One own trading account, with figures from the trading server"""
        return services.get_own_account_with_figures(current_user, account_id)


@blp.route("/client/trading-accounts/password")
class TradingAccountPassword(MethodView):
    @blp.login_required("client")
    @blp.arguments(schemas.ChangeTradingPasswordSchema)
    @blp.response(200, EmptySchema)
    @blp.error_responses(404, 503)
    def put(self, body):
        """更新交易账号密码 Change a trading account's trade or observe (investor) password"""
        services.change_account_password(
            current_user, body["id"], body["type"], body["password"], client_info_from_request()
        )
        return {}


@blp.route("/client/balances")
class Balances(MethodView):
    @blp.login_required("client")
    @blp.arguments(schemas.BalanceQuerySchema, location="query")
    @blp.response(200, schemas.BalanceListSchema)
    def get(self, args):
        """查询所持账户的余额 Balances of own live trading accounts, by fund direction (no demo account)"""
        accounts = services.balances(current_user, args["type"])
        return {"list": accounts, "total": len(accounts)}


def list_platforms():
    platforms = db.session.scalars(select(Platform).order_by(Platform.sort_order, Platform.id)).all()
    return {"list": platforms, "total": len(platforms)}


@blp.route("/client/platforms")
class ClientPlatforms(MethodView):
    @blp.login_required("client")
    @blp.response(200, schemas.PlatformListSchema)
    def get(self):
        """Trading platforms with their download links"""
        return list_platforms()


@blp.route("/ib/platforms")
class IbPlatforms(MethodView):
    @blp.login_required("ib")
    @blp.response(200, schemas.PlatformListSchema)
    def get(self):
        """Trading platforms with their download links (IB portal)"""
        return list_platforms()


# Admin configuration ---------------------------------------------------------------


def prepare_server(values, server):
    values = dict(values)
    if "manager_password" in values:
        values["manager_password_encrypted"] = crypto.encrypt(
            values.pop("manager_password"), services.MANAGER_PASSWORD_PURPOSE
        )
    if "timezone" in values:
        from crm_app.broker.schemas import validate_timezone

        try:
            validate_timezone(values["timezone"])
        except Exception as exc:  # noqa: BLE001 - marshmallow's ValidationError, re-raised in our shape
            raise ValidationFailed(errors={"timezone": [str(exc)]}) from None
    return values


def prepare_account_type(values, account_type):
    if "server_id" in values and db.session.get(TradingServer, values["server_id"]) is None:
        raise ValidationFailed(errors={"server_id": ["No trading server with this id."]})
    return values


for resource in (
    Resource(
        "trading-servers",
        TradingServer,
        schemas.TradingServerSchema,
        schemas.TradingServerUpdateSchema,
        prepare=prepare_server,
    ),
    Resource(
        "trading-account-types",
        AccountType,
        schemas.AdminAccountTypeSchema,
        schemas.AdminAccountTypeUpdateSchema,
        prepare=prepare_account_type,
    ),
    Resource("platforms", Platform, schemas.PlatformSchema, schemas.PlatformUpdateSchema),
):
    register_admin_crud(admin_blp, resource)


@admin_blp.route("/trading-servers/<int:object_id>/check")
class TradingServerCheck(MethodView):
    @admin_blp.login_required("admin")
    @admin_blp.arguments(schemas.TradingServerCheckRequestSchema)
    @admin_blp.response(200, schemas.TradingServerCheckSchema)
    def post(self, body, object_id):
        """Check a trading server: handshake, server time and zone, a user read, the login range

        Runs each step against the server as configured and answers what worked and what did
        not (`ok`, `detail`, `elapsed_ms` per step), so a server can be wired without reading
        logs. A failing step is still a 200; steps after a failed handshake are skipped. Nothing
        is written to the server. 404 for an unknown server.
        """
        return server_check.check_trading_server(
            object_id, body.get("login"), actor=current_user, client=client_info_from_request()
        )
