"""Reports (#11, #35-#44): the caller's rows (client), its tree's (IB), or all (admin)."""

from flask.views import MethodView

from crm_app.common.api import Blueprint, current_user
from crm_app.exports.routes import export_route
from crm_app.reports import exports, schemas, services  # noqa: F401 - exports registers the sources

blp = Blueprint("reports", __name__, url_prefix="/api/v1/reports", description="Reports")


def report_page(query, row_view, args):
    rows, total = services.run_report(query, args["page"], args["size"])
    return {"list": [row_view(row) for row in rows], "total": total}


@blp.route("/deposits")
class DepositReport(MethodView):
    @blp.login_required("any")
    @blp.arguments(schemas.DepositReportQuerySchema, location="query")
    @blp.response(200, schemas.DepositReportSchema)
    def get(self, args):
        """入金报表 Deposits submitted for review, newest first"""
        return report_page(services.deposits_query(current_user, args), services.deposit_row, args)


@blp.route("/transfers")
class TransferReport(MethodView):
    @blp.login_required("any")
    @blp.arguments(schemas.TransferReportQuerySchema, location="query")
    @blp.response(200, schemas.TransferReportSchema)
    def get(self, args):
        """查询转账报表 Internal transfers, newest first"""
        return report_page(services.transfers_query(current_user, args), services.transfer_row, args)


@blp.route("/withdrawals")
class WithdrawalReport(MethodView):
    @blp.login_required("any")
    @blp.arguments(schemas.WithdrawalReportQuerySchema, location="query")
    @blp.response(200, schemas.DepositReportSchema)
    def get(self, args):
        """出金报表 Withdrawals, newest first (same row shape as the deposit report)"""
        return report_page(services.withdrawals_query(current_user, args), services.withdrawal_row, args)


@blp.route("/history-orders")
class HistoryOrderReport(MethodView):
    @blp.login_required("any")
    @blp.arguments(schemas.HistoryOrderQuerySchema, location="query")
    @blp.response(200, schemas.HistoryOrderReportSchema)
    def get(self, args):
        """查询历史订单报表 Closed positions: one row per closing deal (partial closes are rows of their own)"""
        return report_page(services.history_orders_query(current_user, args), services.history_order_row, args)


@blp.route("/positions")
class PositionReport(MethodView):
    @blp.login_required("any")
    @blp.arguments(schemas.PositionQuerySchema, location="query")
    @blp.response(200, schemas.PositionReportSchema)
    def get(self, args):
        """查询持仓报表 Open positions, as last synced from the trading servers"""
        return report_page(services.positions_query(current_user, args), services.position_row, args)


@blp.route("/pending-orders")
class PendingOrderReport(MethodView):
    @blp.login_required("any")
    @blp.arguments(schemas.PendingOrderQuerySchema, location="query")
    @blp.response(200, schemas.PendingOrderReportSchema)
    def get(self, args):
        """查询挂单报表 Working pending orders, as last synced from the trading servers"""
        return report_page(services.pending_orders_query(current_user, args), services.pending_order_row, args)


# Exports: the list's filters (and `format`) in the body; the file is built by a worker.
for name, query_schema, summary in (
    ("withdrawals", schemas.WithdrawalReportQuerySchema, "出金报表导出 Export the withdrawal report"),
    ("deposits", schemas.DepositReportQuerySchema, "入金报表导出 Export the deposit report"),
    ("history-orders", schemas.HistoryOrderQuerySchema, "导出历史订单报表 Export the closed orders report"),
    ("positions", schemas.PositionQuerySchema, "导出持仓报表 Export the open positions report"),
    ("pending-orders", schemas.PendingOrderQuerySchema, "导出挂单报表 Export the pending orders report"),
    ("transfers", schemas.TransferReportQuerySchema, "导出转账报表 Export the transfer report"),
):
    export_route(blp, f"/{name}/export", name, query_schema, summary=summary)
