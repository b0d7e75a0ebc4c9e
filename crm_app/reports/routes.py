"""Reports (#11, #35-#44): the caller's rows (client), its tree's (IB), or all (admin).

Each report is a list route and an export route over one query, so a file always
carries what the list shows.
"""

from flask.views import MethodView

from crm_app.common.api import Blueprint, current_user
from crm_app.exports.routes import export_route
from crm_app.reports import exports, schemas, services  # noqa: F401 - exports registers the sources

blp = Blueprint("reports", __name__, url_prefix="/api/v1/reports", description="Reports")

# (name, filters, answer, query, exact total, row view, list summary, export summary)
REPORTS = (
    ("withdrawals", schemas.WithdrawalReportQuerySchema, schemas.DepositReportSchema,
     services.withdrawals_query, services.withdrawals_count, services.withdrawal_row,
     "出金报表 Withdrawals, newest first (same row shape as the deposit report)",
     "出金报表导出 Export the withdrawal report"),
    ("deposits", schemas.DepositReportQuerySchema, schemas.DepositReportSchema,
     services.deposits_query, services.deposits_count, services.deposit_row,
     "入金报表 Deposits submitted for review, newest first",
     "入金报表导出 Export the deposit report"),
    ("history-orders", schemas.HistoryOrderQuerySchema, schemas.HistoryOrderReportSchema,
     services.history_orders_query, services.history_orders_count, services.history_order_row,
     "查询历史订单报表 Closed positions: one row per closing deal (partial closes are rows of their own)",
     "导出历史订单报表 Export the closed orders report"),
    ("positions", schemas.PositionQuerySchema, schemas.PositionReportSchema,
     services.positions_query, services.positions_count, services.position_row,
     "查询持仓报表 Open positions, as last synced from the trading servers",
     "导出持仓报表 Export the open positions report"),
    ("pending-orders", schemas.PendingOrderQuerySchema, schemas.PendingOrderReportSchema,
     services.pending_orders_query, services.pending_orders_count, services.pending_order_row,
     "查询挂单报表 Working pending orders, as last synced from the trading servers",
     "导出挂单报表 Export the pending orders report"),
    ("transfers", schemas.TransferReportQuerySchema, schemas.TransferReportSchema,
     services.transfers_query, services.transfers_count, services.transfer_row,
     "查询转账报表 Internal transfers, newest first", "导出转账报表 Export the transfer report"),
)  # fmt: skip


def list_route(name, filters_schema, answer_schema, query_for, count_for, row_view, summary):
    def get(self, args):
        query, count = query_for(current_user, args), count_for(current_user, args)
        rows, total = services.run_report(query, args["page"], args["size"], count)
        return {"list": [row_view(row) for row in rows], "total": total}

    get.__doc__ = summary
    get = blp.login_required("any")(
        blp.arguments(filters_schema, location="query")(blp.response(200, answer_schema)(get))
    )
    view = type(f"{answer_schema.__name__}View", (MethodView,), {"get": get})
    blp.route(f"/{name}", endpoint=f"report_{name.replace('-', '_')}")(view)


for name, filters_schema, answer_schema, query_for, count_for, row_view, summary, export_summary in REPORTS:
    list_route(name, filters_schema, answer_schema, query_for, count_for, row_view, summary)
    export_route(blp, f"/{name}/export", name, filters_schema, summary=export_summary)
