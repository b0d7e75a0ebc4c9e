"""The back office's review queue."""

from flask.views import MethodView

from crm_app.common.api import Blueprint, current_user
from crm_app.common.context import client_info_from_request
from crm_app.money.idempotency import idempotent
from crm_app.review import schemas, services

blp = Blueprint("review", __name__, url_prefix="/api/v1/admin", description="Back office: review queue")


def with_object(item):
    """The item, carrying a view of the object under review for the response schema."""
    item.object = services.describe_object(item)
    return item


@blp.route("/audits")
class ReviewQueue(MethodView):
    @blp.login_required("admin")
    @blp.arguments(schemas.ReviewQuerySchema, location="query")
    @blp.response(200, schemas.ReviewItemListSchema)
    def get(self, args):
        """The review queue, newest first (filter by type and status)"""
        rows, total = services.list_review_items(**args)
        return {"list": rows, "total": total}


@blp.route("/audits/<int:item_id>")
class ReviewItem(MethodView):
    @blp.login_required("admin")
    @blp.response(200, schemas.ReviewItemDetailSchema)
    def get(self, item_id):
        """One review item with the object under review"""
        return with_object(services.get_review_item(item_id))


@blp.route("/audits/<int:item_id>/approve")
class ApproveReviewItem(MethodView):
    @blp.login_required("admin")
    @idempotent(blp)
    @blp.arguments(schemas.ApproveSchema)
    @blp.response(200, schemas.ReviewItemDetailSchema)
    def post(self, body, item_id):
        """Approve: the money or account effect follows (409 if already decided)"""
        item = services.approve_review_item(item_id, current_user, client_info_from_request(), body["remark"])
        return with_object(item)


@blp.route("/audits/<int:item_id>/reject")
class RejectReviewItem(MethodView):
    @blp.login_required("admin")
    @idempotent(blp)
    @blp.arguments(schemas.RejectSchema)
    @blp.response(200, schemas.ReviewItemDetailSchema)
    def post(self, body, item_id):
        """Reject with a remark: any held money goes back (409 if already decided)"""
        item = services.reject_review_item(item_id, current_user, body["remark"], client_info_from_request())
        return with_object(item)
