"""Reports (#11, #35-#44): the caller's rows (client), its tree's (IB), or all (admin)."""

from flask.views import MethodView

from crm_app.common.api import Blueprint, current_user
from crm_app.reports import schemas, services

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
