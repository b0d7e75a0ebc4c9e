"""Deposits (client portal)."""

from flask.views import MethodView

from crm_app.common.api import Blueprint, current_user
from crm_app.common.context import client_info_from_request
from crm_app.deposits import schemas, services
from crm_app.money.idempotency import idempotent
from crm_app.money.throttle import money_throttle

blp = Blueprint("deposits", __name__, url_prefix="/api/v1/client", description="Deposits")


@blp.route("/deposits")
class Deposits(MethodView):
    @blp.login_required("client")
    @money_throttle(blp)
    @idempotent(blp)
    @blp.arguments(schemas.NewDepositSchema)
    @blp.response(201, schemas.PaymentInstructionsSchema)
    @blp.error_responses(404)
    def post(self, body):
        """创建入金申请草稿 Start a deposit: the order number and how to pay it"""
        deposit = services.create_draft(current_user, body, client_info_from_request())
        return services.payment_instructions(deposit)

    @blp.login_required("client")
    @blp.arguments(schemas.DepositQuerySchema, location="query")
    @blp.response(200, schemas.DepositListSchema)
    def get(self, args):
        """查询入金历史记录 Own deposits, newest first"""
        rows, total = services.list_own_deposits(current_user, **args)
        return {"list": rows, "total": total}


@blp.route("/deposits/submit")
class SubmitDeposit(MethodView):
    @blp.login_required("client")
    @money_throttle(blp)
    @idempotent(blp)
    @blp.arguments(schemas.SubmitDepositSchema)
    @blp.response(200, schemas.SubmitAnswerSchema)
    @blp.error_responses(404)
    def post(self, body):
        """提交入金申请 Submit a paid deposit with its receipt (goes to review)"""
        deposit = services.submit_draft(
            current_user, body["order_number"], body["receipt_url"], client_info_from_request()
        )
        return {"order_number": deposit.order_number, "status": deposit.status}
