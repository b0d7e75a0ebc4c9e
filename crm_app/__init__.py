"""The Flask application factory."""

import logging

from flask import Flask, g, send_from_directory

from crm_app.config import SIMULATOR_ENVS, load_config


def create_app(overrides=None):
    app = Flask(__name__, instance_relative_config=False)
    app.config.update(load_config(overrides))
    app.json.sort_keys = False
    configure_logging(app)

    if app.config.get("TRUSTED_PROXY_COUNT"):
        from werkzeug.middleware.proxy_fix import ProxyFix

        count = app.config["TRUSTED_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)

    from crm_app.common.api import register_security_scheme
    from crm_app.common.headers import register_security_headers
    from crm_app.common.reads import configure_request_connections
    from crm_app.common.runtime import Runtime
    from crm_app.common.schemas import register_field_types
    from crm_app.extensions import api, db, jwt, migrate

    db.init_app(app)
    migrate.init_app(app, db, directory=str(app.config["MIGRATIONS_DIR"]))
    jwt.init_app(app)
    api.init_app(app, spec_kwargs={"info": {"description": API_DESCRIPTION}})
    register_security_scheme(api)
    register_field_types(api)
    app.extensions["crm_runtime"] = Runtime(app)

    import_models()
    with app.app_context():
        configure_request_connections(app, db)
    configure_jwt(jwt)
    register_blueprints(app, api)
    register_plain_routes(app)
    register_security_headers(app)
    register_commands(app)
    return app


API_DESCRIPTION = (
    "Back end of a forex broker's client portal, IB partner portal and back office. "
    "Sign in with `POST /api/v1/auth/login`, then press **Authorize** and paste the `token`. "
    "Errors always answer `{code, status, message, errors}`; amounts are decimal strings."
)


def configure_logging(app):
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def import_models():
    """Every model module, so the metadata (and Alembic) sees every table."""
    import crm_app.admin.models  # noqa: F401
    import crm_app.auth.models  # noqa: F401
    import crm_app.broker.models  # noqa: F401
    import crm_app.deposits.models  # noqa: F401
    import crm_app.exports.models  # noqa: F401
    import crm_app.funding.models  # noqa: F401
    import crm_app.kyc.models  # noqa: F401
    import crm_app.money.models  # noqa: F401
    import crm_app.rebates.models  # noqa: F401
    import crm_app.review.models  # noqa: F401
    import crm_app.sync.models  # noqa: F401
    import crm_app.trading.models  # noqa: F401
    import crm_app.transfers.models  # noqa: F401
    import crm_app.uploads.models  # noqa: F401
    import crm_app.withdrawals.models  # noqa: F401


def register_blueprints(app, api):
    from crm_app.admin.routes import blp as admin_blp
    from crm_app.auth.routes import blp as auth_blp
    from crm_app.broker.routes import admin_blp as broker_admin_blp
    from crm_app.broker.routes import blp as broker_blp
    from crm_app.deposits.routes import blp as deposits_blp
    from crm_app.exports.routes import blp as exports_blp
    from crm_app.funding.routes import admin_blp as funding_admin_blp
    from crm_app.funding.routes import blp as funding_blp
    from crm_app.ib.routes import blp as ib_blp
    from crm_app.kyc.routes import admin_blp as kyc_admin_blp
    from crm_app.kyc.routes import blp as kyc_blp
    from crm_app.kyc.routes import everify_blp, everify_sim_blp
    from crm_app.rebates.routes import admin_blp as rebates_admin_blp
    from crm_app.rebates.routes import blp as rebates_blp
    from crm_app.reports.routes import blp as reports_blp
    from crm_app.review.routes import blp as review_blp
    from crm_app.sync.routes import blp as sync_blp
    from crm_app.trading.routes import admin_blp as trading_admin_blp
    from crm_app.trading.routes import blp as trading_blp
    from crm_app.transfers.routes import blp as transfers_blp
    from crm_app.uploads.routes import blp as uploads_blp
    from crm_app.withdrawals.routes import blp as withdrawals_blp

    for blueprint in (
        auth_blp,
        broker_blp,
        uploads_blp,
        admin_blp,
        broker_admin_blp,
        review_blp,
        trading_blp,
        trading_admin_blp,
        sync_blp,
        funding_blp,
        funding_admin_blp,
        transfers_blp,
        deposits_blp,
        reports_blp,
        withdrawals_blp,
        ib_blp,
        exports_blp,
        rebates_admin_blp,
        rebates_blp,
        kyc_blp,
        kyc_admin_blp,
        everify_blp,
    ):
        api.register_blueprint(blueprint)
    if app.config["APP_ENV"] in SIMULATOR_ENVS:
        api.register_blueprint(everify_sim_blp)


def configure_jwt(jwt):
    """Every token failure answers 401 in the one error shape."""
    from crm_app.auth.services import load_token_user
    from crm_app.common.api import error_body

    def unauthorized(code):
        return error_body(401, code=code), 401

    @jwt.token_in_blocklist_loader
    def token_revoked(jwt_header, jwt_payload):
        user = load_token_user(jwt_payload)
        g.token_user = user
        return user is None

    @jwt.user_lookup_loader
    def lookup_user(jwt_header, jwt_payload):
        return g.get("token_user")

    jwt.unauthorized_loader(lambda reason: unauthorized("unauthorized"))
    jwt.invalid_token_loader(lambda reason: unauthorized("token_invalid"))
    jwt.expired_token_loader(lambda header, payload: unauthorized("token_expired"))
    jwt.revoked_token_loader(lambda header, payload: unauthorized("token_revoked"))
    jwt.needs_fresh_token_loader(lambda header, payload: unauthorized("token_invalid"))
    jwt.user_lookup_error_loader(lambda header, payload: unauthorized("token_revoked"))
    jwt.token_verification_failed_loader(lambda header, payload: unauthorized("token_invalid"))


def register_plain_routes(app):
    """Routes outside the OpenAPI document: probes and Swagger UI's own assets."""
    from swagger_ui_bundle import swagger_ui_path

    from crm_app.common.health import readiness

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        checks = readiness()
        ok = all(v == "ok" for v in checks.values())
        return {"status": "ok" if ok else "unavailable", "checks": checks}, (200 if ok else 503)

    @app.get("/swagger-ui-assets/<path:filename>")
    def swagger_ui_assets(filename):
        return send_from_directory(str(swagger_ui_path), filename, max_age=86400)


def register_commands(app):
    from crm_app.cli import register

    register(app)
