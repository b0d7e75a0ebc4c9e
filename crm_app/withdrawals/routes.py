"""Withdrawals: #26 request one, #24 the caller's history."""

from flask.views import MethodView

from crm_app.common.api import Blueprint, current_user
from crm_app.common.context import client_info_from_request
from crm_app.money.idempotency import idempotent
from crm_app.money.throttle import money_throttle
from crm_app.withdrawals import schemas, services

blp = Blueprint("withdrawals", __name__, url_prefix="/api/v1/client", description="Withdrawals")


@blp.route("/withdrawals")
class Withdrawals(MethodView):
    @blp.login_required("client")
    @money_throttle(blp)
    @idempotent(blp)
    @blp.arguments(schemas.NewWithdrawalSchema)
    @blp.response(201, schemas.NewWithdrawalAnswerSchema)
    @blp.error_responses(404, 503)
    def post(self, body):
        """创建出金申请 Request a withdrawal: the amount leaves the trading account at once

        Send `fee`, `exchange_rate` and `remittance_amount` as computed from the channel (#25):
        fee = fixed + withdrawal_amount x percent / 100, and remittance_amount =
        (withdrawal_amount - fee) x exchange_rate, both half-up to cents. Values that differ
        from the server's are a 422 naming the expected ones. The info object of `method` is
        used; the other two may be sent empty or null (a form with a tab per method), and one
        holding typed data is a 422 naming it. Not enough free margin: 422
        `insufficient_funds`. Then the back office reviews it: approval means paid out,
        rejection gives the money back to the trading account.
        """
        return services.create_withdrawal(current_user, body, client_info_from_request())

    @blp.login_required("client")
    @blp.arguments(schemas.WithdrawalQuerySchema, location="query")
    @blp.response(200, schemas.WithdrawalListSchema)
    def get(self, args):
        """查询出金历史记录 Own withdrawals, newest first"""
        rows, total = services.list_own_withdrawals(current_user, **args)
        return {"list": rows, "total": total}
