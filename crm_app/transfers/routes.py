"""Internal transfers between the caller's own trading accounts."""

from flask.views import MethodView

from crm_app.common.api import Blueprint, current_user
from crm_app.common.context import client_info_from_request
from crm_app.money.idempotency import idempotent
from crm_app.money.throttle import money_throttle
from crm_app.transfers import schemas, services

blp = Blueprint("transfers", __name__, url_prefix="/api/v1/client", description="Internal transfers")


@blp.route("/transfers")
class Transfers(MethodView):
    @blp.login_required("client")
    @money_throttle(blp)
    @idempotent(blp)
    @blp.arguments(schemas.NewTransferSchema)
    @blp.response(201, schemas.TransferAnswerSchema)
    @blp.error_responses(404, 503)
    def post(self, body):
        """创建转账申请 Move money between two of your trading accounts

        The amount leaves the source at once (422 when its free margin is short). Up to
        the broker's automatic limit it reaches the target at once; above it, after review.
        """
        transfer, item = services.create_transfer(current_user, body, client_info_from_request())
        return {
            "review_item_id": item.id,
            "audit_status": item.status,
            "status": transfer.status,
            "order_number": transfer.order_number,
        }

    @blp.login_required("client")
    @blp.arguments(schemas.TransferQuerySchema, location="query")
    @blp.response(200, schemas.TransferListSchema)
    def get(self, args):
        """查询转账历史列表 Own transfers, newest first"""
        rows, total = services.list_own_transfers(current_user, **args)
        return {"list": rows, "total": total}
