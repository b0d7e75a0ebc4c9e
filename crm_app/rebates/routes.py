"""Rebate rules (admin CRUD, versioned), the on-demand run, and the IB's rebate reports."""

from flask.views import MethodView

from crm_app.common.api import Blueprint, current_user
from crm_app.common.context import client_info_from_request
from crm_app.common.schemas import PageQuerySchema
from crm_app.exports.routes import export_route
from crm_app.rebates import reports, schemas, services

admin_blp = Blueprint(
    "rebates_admin", __name__, url_prefix="/api/v1/admin", description="Rebate rules and the rebate engine"
)
blp = Blueprint("rebates_ib", __name__, url_prefix="/api/v1/ib", description="IB portal: rebates and commissions")


@admin_blp.route("/rebate-rules", endpoint="rebate-rules-collection")
class RuleCollection(MethodView):
    @admin_blp.login_required("admin")
    @admin_blp.arguments(schemas.RuleListQuerySchema, location="query")
    @admin_blp.response(200, schemas.RebateRuleListSchema)
    def get(self, args):
        """List rebate rules (current versions; `history=true` for closed ones too)"""
        rows, total = services.list_rules(args["page"], args["size"], current_only=not args["history"])
        return {"list": rows, "total": total}

    @admin_blp.login_required("admin")
    @admin_blp.arguments(schemas.RebateRuleSchema)
    @admin_blp.response(201, schemas.RebateRuleSchema)
    def post(self, body):
        """Create a rebate rule

        For an account type (or MT group pattern) and a symbol pattern: `per_lot` pays
        `level_amounts[n-1]` per lot closed to the IB at level n (1 = the client's own IB),
        `commission_percent` that percent of the trade's commission. With
        `upline_difference_only` an upline earns its amount minus the level below's.
        Trades held less than `min_holding_seconds` earn nothing.
        """
        return services.create_rule(body, current_user, client_info_from_request())


@admin_blp.route("/rebate-rules/<int:object_id>", endpoint="rebate-rules-item")
class RuleItem(MethodView):
    @admin_blp.login_required("admin")
    @admin_blp.response(200, schemas.RebateRuleSchema)
    def get(self, object_id):
        """One rebate rule version"""
        return services.get_rule(object_id)

    @admin_blp.login_required("admin")
    @admin_blp.arguments(schemas.RebateRuleUpdateSchema)
    @admin_blp.response(200, schemas.RebateRuleSchema)
    def put(self, body, object_id):
        """Change a rebate rule: a new version effective now (answered), the old one closed

        Rebates already calculated keep their version and amount; closing deals from now
        on use the new version. 409 `rule_version_closed` for a version already closed.
        """
        return services.update_rule(object_id, body, current_user, client_info_from_request())

    @admin_blp.login_required("admin")
    @admin_blp.response(204)
    def delete(self, object_id):
        """End a rebate rule now (its versions stay: rebates name them)"""
        services.retire_rule(object_id, current_user, client_info_from_request())


@admin_blp.route("/rebates/run")
class RunRebates(MethodView):
    @admin_blp.login_required("admin")
    @admin_blp.arguments(schemas.RunRequestSchema)
    @admin_blp.response(202, schemas.RebateRunSchema)
    def post(self, body):
        """Calculate rebates now (and settle and pay them with `settle: true`), in a queued job

        Answers at once with the run (`status` `queued`); `GET /api/v1/admin/rebates/runs/{id}`
        follows it to `finished` with its counts, or `failed` with its error. Safe to call at
        any time and at once with the schedule: a closing deal pays an IB once.
        """
        return services.request_run(body["settle"], current_user, client_info_from_request())


@admin_blp.route("/rebates/runs")
class RebateRuns(MethodView):
    @admin_blp.login_required("admin")
    @admin_blp.arguments(PageQuerySchema, location="query")
    @admin_blp.response(200, schemas.RebateRunListSchema)
    def get(self, args):
        """On-demand rebate runs, newest first"""
        rows, total = services.list_runs(args["page"], args["size"])
        return {"list": rows, "total": total}


@admin_blp.route("/rebates/runs/<int:run_id>")
class RebateRunItem(MethodView):
    @admin_blp.login_required("admin")
    @admin_blp.response(200, schemas.RebateRunSchema)
    def get(self, run_id):
        """One rebate run: its status, counts and error"""
        return services.get_run(run_id)


@admin_blp.route("/users/<int:user_id>/rebate-payout-account")
class AdminPayoutAccount(MethodView):
    @admin_blp.login_required("admin")
    @admin_blp.response(200, schemas.PayoutAccountSchema)
    def get(self, user_id):
        """The trading account an IB's rebates are paid to (404 for a user who is no IB)"""
        return services.payout_account_view(user_id)

    @admin_blp.login_required("admin")
    @admin_blp.arguments(schemas.PayoutAccountChoiceSchema)
    @admin_blp.response(200, schemas.PayoutAccountSchema)
    def put(self, body, user_id):
        """Choose the trading account an IB's rebates are paid to (audit-logged)

        One of the IB's own live, active accounts: another user's account is 404, a demo or
        inactive one 422 `payout_account_not_eligible`. Applies to settlements from now on.
        """
        return services.choose_payout_account(
            user_id, body["trading_account_id"], current_user, client_info_from_request()
        )


@blp.route("/rebate-payout-account")
class PayoutAccount(MethodView):
    @blp.login_required("ib")
    @blp.response(200, schemas.PayoutAccountSchema)
    def get(self):
        """The trading account the IB's rebates are paid to

        `source` says whether the IB chose it or it is the default (its first active live
        account); `none` when it has no live account yet (its rebates wait for one).
        """
        return services.payout_account_view(current_user.id)

    @blp.login_required("ib")
    @blp.arguments(schemas.PayoutAccountChoiceSchema)
    @blp.response(200, schemas.PayoutAccountSchema)
    @blp.error_responses(404)
    def put(self, body):
        """Choose the trading account the IB's rebates are paid to

        One of its own live, active accounts: any other account is 404, its own demo or
        inactive account 422 `payout_account_not_eligible`. Applies to settlements from now on.
        """
        return services.choose_payout_account(
            current_user.id, body["trading_account_id"], current_user, client_info_from_request()
        )


def _page(query, row_view, args):
    rows, total = reports.run_report(query, args["page"], args["size"])
    return {"list": [row_view(row) for row in rows], "total": total}


@blp.route("/rebates")
class Rebates(MethodView):
    @blp.login_required("ib")
    @blp.arguments(schemas.RebateQuerySchema, location="query")
    @blp.response(200, schemas.RebateListSchema)
    def get(self, args):
        """ib查看返佣记录 The IB's rebate records: one per closing deal it was rebated on

        Zero amounts are listed with their `reason`. `client_user_name` and `ib_user_name`
        are names, served as strings (the seed types them as numbers).
        """
        return _page(reports.rebates_query(current_user, args), reports.rebate_row, args)


@blp.route("/commissions/details")
class CommissionDetails(MethodView):
    @blp.login_required("ib")
    @blp.arguments(schemas.CommissionDetailQuerySchema, location="query")
    @blp.response(200, schemas.CommissionDetailListSchema)
    def get(self, args):
        """查询佣金明细报表 Commission details: one row per rebated order of the IB

        `time_search_type` says whether `start_time`/`end_time` (broker's timezone,
        YYYY-MM-DD HH:MM:SS) apply to the calculation or the payment time.
        """
        return _page(reports.commission_details_query(current_user, args), reports.commission_detail_row, args)


@blp.route("/commissions")
class Commissions(MethodView):
    @blp.login_required("ib")
    @blp.arguments(schemas.CommissionQuerySchema, location="query")
    @blp.response(200, schemas.CommissionListSchema)
    def get(self, args):
        """查询佣金报表 Commissions: one row per settlement paid (or being paid) to the IB"""
        return _page(reports.commissions_query(current_user, args), reports.commission_row, args)


export_route(
    blp,
    "/commissions/details/export",
    "ib-commission-details",
    schemas.CommissionDetailFilterSchema,
    role="ib",
    summary="导出佣金明细报表 Export the commission details",
)
export_route(
    blp,
    "/commissions/export",
    "ib-commissions",
    schemas.CommissionFilterSchema,
    role="ib",
    summary="导出佣金报表 Export the commissions",
)
