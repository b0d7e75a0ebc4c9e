"""Broker configuration: public (#7, #8, #9) and admin editing."""

from flask.views import MethodView

from crm_app.broker import schemas, services
from crm_app.common.api import Blueprint, current_user
from crm_app.common.context import client_info_from_request

blp = Blueprint("broker", __name__, url_prefix="/api/v1", description="Broker configuration (public)")
admin_blp = Blueprint("broker_admin", __name__, url_prefix="/api/v1/admin", description="Broker configuration (admin)")


@blp.route("/config/login-page")
class LoginPage(MethodView):
    @blp.response(200, schemas.LoginPageSchema)
    def get(self):
        """Login page look for the admin, client and IB portals"""
        return services.get_setting("login_page")


@blp.route("/config/broker")
class BrokerConfig(MethodView):
    @blp.response(200, schemas.BrokerConfigSchema)
    def get(self):
        """Broker name, logos, support contacts, timezone"""
        return services.get_setting("broker")


@blp.route("/currencies")
class Currencies(MethodView):
    @blp.arguments(schemas.CurrencyQuerySchema, location="query")
    @blp.response(200, schemas.CurrencyListSchema)
    def get(self, args):
        """获取所有可用的货币 Currencies, filtered by funding method"""
        currencies = services.list_currencies(args["method"])
        return {"list": currencies, "total": len(currencies)}


@admin_blp.route("/config/broker")
class AdminBrokerConfig(MethodView):
    @admin_blp.login_required("admin")
    @admin_blp.arguments(schemas.BrokerConfigUpdateSchema)
    @admin_blp.response(200, schemas.AdminBrokerConfigSchema)
    def put(self, body):
        """Edit the broker configuration (fields not sent stay as they are)"""
        return services.update_setting("broker", body, actor=current_user, client=client_info_from_request())


@admin_blp.route("/config/login-page")
class AdminLoginPage(MethodView):
    @admin_blp.login_required("admin")
    @admin_blp.arguments(schemas.LoginPageSchema)
    @admin_blp.response(200, schemas.LoginPageSchema)
    def put(self, body):
        """Edit the login pages (fields not sent stay as they are)"""
        return services.update_setting("login_page", body, actor=current_user, client=client_info_from_request())


@admin_blp.route("/currencies")
class AdminCurrencies(MethodView):
    @admin_blp.login_required("admin")
    @admin_blp.response(200, schemas.AdminCurrencyListSchema)
    def get(self):
        """Every currency, disabled ones included"""
        currencies = services.list_currencies(include_disabled=True)
        return {"list": currencies, "total": len(currencies)}

    @admin_blp.login_required("admin")
    @admin_blp.arguments(schemas.AdminCurrencySchema)
    @admin_blp.response(201, schemas.AdminCurrencySchema)
    @admin_blp.error_responses(409)
    def post(self, body):
        """Add a currency"""
        return services.create_currency(body, actor=current_user, client=client_info_from_request())


@admin_blp.route("/currencies/<int:currency_id>")
class AdminCurrency(MethodView):
    @admin_blp.login_required("admin")
    @admin_blp.response(200, schemas.AdminCurrencySchema)
    def get(self, currency_id):
        """One currency"""
        return services.get_currency(currency_id)

    @admin_blp.login_required("admin")
    @admin_blp.arguments(schemas.AdminCurrencyUpdateSchema)
    @admin_blp.response(200, schemas.AdminCurrencySchema)
    @admin_blp.error_responses(409)
    def put(self, body, currency_id):
        """Change a currency"""
        return services.update_currency(currency_id, body, actor=current_user, client=client_info_from_request())

    @admin_blp.login_required("admin")
    @admin_blp.response(204)
    def delete(self, currency_id):
        """Remove a currency"""
        services.delete_currency(currency_id, actor=current_user, client=client_info_from_request())
