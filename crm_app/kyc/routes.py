"""KYC: the client's form and data, the broker's form editor, electronic verification."""

from flask import Response, redirect, request
from flask.views import MethodView
from markupsafe import escape

from crm_app.common.api import Blueprint, current_user
from crm_app.common.context import client_info_from_request
from crm_app.kyc import schemas, services

blp = Blueprint("kyc", __name__, url_prefix="/api/v1", description="KYC (client and IB portals)")
admin_blp = Blueprint("kyc_admin", __name__, url_prefix="/api/v1/admin", description="Back office: KYC form")
everify_blp = Blueprint(
    "everify", __name__, url_prefix="/api/v1", description="Electronic identity verification: vendor callbacks"
)
# The simulator vendor's pages: registered only in development and test (anyone may press Pass).
everify_sim_blp = Blueprint(
    "everify_sim",
    __name__,
    url_prefix="/api/v1",
    description="Electronic identity verification: the simulator vendor (development and test only)",
)


@blp.route("/client/kyc")
class ClientKyc(MethodView):
    @blp.login_required("client")
    @blp.response(200, schemas.KycSchema)
    def get(self):
        """Own KYC status and saved data"""
        return services.kyc_view(current_user)

    @blp.login_required("client")
    @blp.arguments(schemas.SaveKycSchema)
    @blp.response(200, schemas.SaveKycAnswerSchema)
    @blp.error_responses(409)
    def put(self, body):
        """保存Client用户身份信息 Save one KYC module, or `all` to submit

        `kyc_data` is `{module_key: {field_key: value}}`, field keys as #28 lists them (the
        questionnaire's too; a list of answers is also accepted there). Each module is
        checked against the broker's form (required fields, options, types, dates,
        ISO 3166-1 alpha-2 countries, the caller's own upload URLs); errors are keyed
        `<module>.<field>`. A single-module save reads only `kyc_data[current_module]` and
        ignores the other modules sent; #27's data sent back is accepted (`identity.full_name`
        must agree with the first and last name). `current_module: all` saves every module
        sent and, with nothing missing, submits the KYC for review (`pending`); saving while
        `pending` or `approved` is a 409. `current_module: e_verify` saves nothing (the
        vendor sets it) and answers the e-verify state.
        """
        return services.save_kyc_module(
            current_user, body["current_module"], body["kyc_data"], client_info_from_request()
        )


@blp.route("/client/kyc/form")
class ClientKycForm(MethodView):
    @blp.login_required("client")
    @blp.response(200, schemas.KycFormSchema)
    def get(self):
        """The KYC form: modules, fields, options, the caller's values and statuses"""
        return services.kyc_form_view(current_user)


@blp.route("/client/kyc/questionnaire")
class ClientQuestionnaire(MethodView):
    @blp.login_required("client")
    @blp.arguments(schemas.SaveQuestionnaireSchema)
    @blp.response(200, schemas.EmptySchema)
    @blp.error_responses(409)
    def put(self, body):
        """保存Client用户问卷答案 Save questionnaire answers (409 once the KYC is pending or approved)"""
        services.save_questionnaire(current_user, body["questionnaire_id"], body["answers"], client_info_from_request())
        return {}


@blp.route("/client/kyc/e-verify/sessions")
class EVerifySessions(MethodView):
    @blp.login_required("client")
    @blp.arguments(schemas.EVerifySessionRequestSchema)
    @blp.response(201, schemas.EVerifySessionSchema)
    def post(self, body):
        """创建电子认证会话 Start an electronic identity verification session

        Send the user to `redirect_url`; the vendor brings them back to `success_url` or
        `failed_url` and reports the result to our webhook. Both must be a path on this site
        or on one of the broker's front-end origins (422 `redirect_not_allowed`); with no
        vendor set up (production without `EVERIFY_PROVIDER`) it is a 503 `e_verify_unavailable`.
        """
        return services.start_everify_session(
            current_user, body["success_url"], body["failed_url"], client_info_from_request()
        )


@blp.route("/ib/kyc")
class IbKyc(MethodView):
    @blp.login_required("ib")
    @blp.response(200, schemas.KycSchema)
    def get(self):
        """The IB's own KYC status and data"""
        return services.kyc_view(current_user)


@admin_blp.route("/kyc/form")
class AdminKycForm(MethodView):
    @admin_blp.login_required("admin")
    @admin_blp.response(200, schemas.AdminFormSchema)
    def get(self):
        """The KYC form as configured: every module and field, disabled ones included"""
        modules = services.admin_form()
        return {"list": modules, "total": len(modules)}

    @admin_blp.login_required("admin")
    @admin_blp.arguments(schemas.AdminModuleUpdateSchema)
    @admin_blp.response(200, schemas.AdminModuleSchema)
    def put(self, body):
        """Change one module; `fields`, when sent, replaces its field list"""
        return services.update_form_module(body, actor=current_user, client=client_info_from_request())


@admin_blp.route("/kyc/questionnaires")
class AdminQuestionnaires(MethodView):
    @admin_blp.login_required("admin")
    @admin_blp.response(200, schemas.QuestionnaireListSchema)
    def get(self):
        """Every questionnaire with its questions"""
        questionnaires = services.list_questionnaires()
        return {"list": questionnaires, "total": len(questionnaires)}

    @admin_blp.login_required("admin")
    @admin_blp.arguments(schemas.QuestionnaireSchema)
    @admin_blp.response(201, schemas.QuestionnaireSchema)
    def post(self, body):
        """Add a questionnaire"""
        return services.create_questionnaire(body, actor=current_user, client=client_info_from_request())


@admin_blp.route("/kyc/questionnaires/<int:questionnaire_id>")
class AdminQuestionnaire(MethodView):
    @admin_blp.login_required("admin")
    @admin_blp.arguments(schemas.QuestionnaireUpdateSchema)
    @admin_blp.response(200, schemas.QuestionnaireSchema)
    def put(self, body, questionnaire_id):
        """Change a questionnaire; `questions`, when sent, replaces them"""
        return services.update_questionnaire(
            questionnaire_id, body, actor=current_user, client=client_info_from_request()
        )


@everify_blp.route("/webhooks/e-verify/<provider>")
class EVerifyWebhook(MethodView):
    @everify_blp.response(200, schemas.WebhookAnswerSchema)
    @everify_blp.doc(
        parameters=[
            {"in": "header", "name": "X-Signature", "required": True, "schema": {"type": "string"}},
            {"in": "header", "name": "X-Signature-Timestamp", "required": True, "schema": {"type": "string"}},
        ]
    )
    def post(self, provider):
        """E-verification result callback, signed by the provider

        `X-Signature: sha256=<hex HMAC-SHA256 of "<X-Signature-Timestamp>.<raw body>">`
        with the provider's secret; a missing, wrong or stale signature is a 401 and changes
        nothing. An expired session is a 409.
        """
        session = services.receive_everify_callback(provider, request.get_data(cache=False), dict(request.headers))
        return {"session_id": session.id, "status": session.status}


SIM_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Identity check (simulator)</title></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 3em auto">
<h1>Identity check</h1>
<p>This is the built-in simulator of an electronic identity verification vendor.
Session <code>{session_id}</code> is <strong>{status}</strong>; it expires at {expire_at} UTC.</p>
<form method="post" action="{action}">
<button type="submit" name="outcome" value="pass">Pass</button>
<button type="submit" name="outcome" value="fail">Fail</button>
</form>
</body></html>
"""


@everify_sim_blp.route("/e-verify/sim/<session_id>")
class SimPage(MethodView):
    @everify_sim_blp.response(200, content_type="text/html")
    def get(self, session_id):
        """The simulator vendor's verification page (Pass / Fail)"""
        session = services.get_sim_session(session_id)
        page = SIM_PAGE.format(
            session_id=escape(session.id),
            status=escape(session.status),
            expire_at=escape(session.expire_at.strftime("%Y-%m-%d %H:%M:%S")),
            action=escape(f"{request.script_root}/api/v1/e-verify/sim/{session.id}/decide"),
        )
        return Response(page, mimetype="text/html", headers={"Cache-Control": "no-store"})


@everify_sim_blp.route("/e-verify/sim/<session_id>/decide")
class SimDecide(MethodView):
    @everify_sim_blp.arguments(schemas.SimDecisionSchema, location="form")
    @everify_sim_blp.response(303)
    def post(self, form, session_id):
        """The simulator page's answer: the vendor reports it, the person goes back"""
        return redirect(services.decide_sim_session(session_id, form["outcome"] == "pass"), code=303)
