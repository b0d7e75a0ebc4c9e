"""Deposit and withdrawal channels (#20, #25 and their admin CRUD) and payout accounts (#31-#34)."""

from flask.views import MethodView

from crm_app.common.api import Blueprint, current_user
from crm_app.common.context import client_info_from_request
from crm_app.common.crud import Resource, register_admin_crud
from crm_app.common.schemas import EmptySchema
from crm_app.funding import schemas, services
from crm_app.funding.models import DepositChannel, WithdrawalChannel
from crm_app.money.idempotency import idempotent

blp = Blueprint("funding", __name__, url_prefix="/api/v1", description="Funding channels and payout accounts")
admin_blp = Blueprint(
    "funding_admin",
    __name__,
    url_prefix="/api/v1/admin",
    description="Back office: deposit and withdrawal channels",
)


@blp.route("/client/deposit-channels")
class DepositChannels(MethodView):
    @blp.login_required("client")
    @blp.arguments(schemas.ChannelQuerySchema, location="query")
    @blp.response(200, schemas.DepositChannelListSchema)
    def get(self, args):
        """获取可用的入金渠道 Deposit channels open to the caller (its KYC country)

        A channel with `allowed_countries` is shown only to callers whose KYC country is one of them.
        `fee` is "5.00" (fixed), "0.5%" (percent of the amount) or "5.00 + 0.5%" (both, added).
        """
        rows, total = services.list_open_channels("deposit", current_user.id, **args)
        return {"list": rows, "total": total}


@blp.route("/client/withdrawal-channels")
class WithdrawalChannels(MethodView):
    @blp.login_required("client")
    @blp.arguments(schemas.ChannelQuerySchema, location="query")
    @blp.response(200, schemas.WithdrawalChannelListSchema)
    def get(self, args):
        """获取可用的出金渠道 Withdrawal channels open to the caller (its KYC country)

        `fee` is "5.00" (fixed), "0.5%" (percent of the amount) or "5.00 + 0.5%" (both, added).
        """
        rows, total = services.list_open_channels("withdrawal", current_user.id, **args)
        return {"list": rows, "total": total}


@blp.route("/client/payment-accounts")
class PaymentAccounts(MethodView):
    @blp.login_required("client")
    @idempotent(blp)
    @blp.arguments(schemas.NewPaymentAccountSchema)
    @blp.response(201, schemas.NewPaymentAccountAnswerSchema)
    def post(self, body):
        """创建收款账户 Add a payout account (bank, wire, crypto)

        The info object of `payment_method` is used. The other two may be sent empty or null (as
        a form with a tab per method sends them); one holding typed data is a 422 naming it.
        `bank_country` takes an ISO 3166-1 code or an English country name and is stored as
        alpha-2. The first account of a method is its default.
        """
        account = services.create_payment_account(current_user, body, client_info_from_request())
        return {"id": account.id}

    @blp.login_required("client")
    @blp.arguments(schemas.PaymentAccountQuerySchema, location="query")
    @blp.response(200, schemas.PaymentAccountListSchema)
    def get(self, args):
        """获取收款账户列表 Own payout accounts, grouped by method (the default first)"""
        return services.list_payment_accounts(current_user.id, **args)


@blp.route("/client/payment-accounts/<int:account_id>")
class PaymentAccount(MethodView):
    @blp.login_required("client")
    @blp.response(200, schemas.PaymentAccountSchema)
    def get(self, account_id):
        """One own payout account"""
        return services.get_payment_account(current_user.id, account_id)

    @blp.login_required("client")
    @blp.arguments(schemas.PaymentAccountUpdateSchema)
    @blp.response(200, EmptySchema)
    def put(self, body, account_id):
        """更新收款账户 Update a payout account (fields not sent stay)

        The body's `id`, if sent, must match the path. `is_default`: true moves the default here.
        Only the info object of the account's method is used; the others may be sent empty or null.
        """
        services.update_payment_account(current_user, account_id, body, client_info_from_request())
        return {}


# Admin configuration ---------------------------------------------------------------

for resource in (
    Resource(
        "deposit-channels",
        DepositChannel,
        schemas.AdminDepositChannelSchema,
        schemas.AdminDepositChannelUpdateSchema,
        prepare=services.prepare_channel,
    ),
    Resource(
        "withdrawal-channels",
        WithdrawalChannel,
        schemas.AdminWithdrawalChannelSchema,
        schemas.AdminWithdrawalChannelUpdateSchema,
        prepare=services.prepare_channel,
    ),
):
    register_admin_crud(admin_blp, resource)
