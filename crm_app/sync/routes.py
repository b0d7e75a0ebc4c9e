"""Back office: trading-server sync on demand, and each server's sync state."""

from flask.views import MethodView

from crm_app.common.api import Blueprint
from crm_app.sync import schemas, services

blp = Blueprint("sync_admin", __name__, url_prefix="/api/v1/admin", description="Back office: trading-server sync")


@blp.route("/sync")
class Sync(MethodView):
    @blp.login_required("admin")
    @blp.arguments(schemas.SyncRequestSchema)
    @blp.response(202, schemas.SyncAnswerSchema)
    @blp.error_responses(404)
    def post(self, body):
        """Start a trading-server sync now (it also runs on a schedule)

        Queues one job per server on the `sync` queue: deals, order history, closed positions,
        open positions, pending orders and account figures. A server whose sync is already
        queued or running answers that job instead of a second one.
        """
        return services.request_sync(body.get("server_id"))

    @blp.login_required("admin")
    @blp.response(200, schemas.SyncStateListSchema)
    def get(self):
        """Each trading server's sync state: watermark, running, last run and its error"""
        states = services.sync_states()
        return {"list": states, "total": len(states)}
