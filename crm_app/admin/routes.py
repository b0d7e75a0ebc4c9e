"""Back office: users and the audit log."""

from flask.views import MethodView

from crm_app.admin import schemas, services
from crm_app.common.api import Blueprint, current_user
from crm_app.common.context import client_info_from_request

blp = Blueprint("admin", __name__, url_prefix="/api/v1/admin", description="Back office: users and audit log")


@blp.route("/users")
class Users(MethodView):
    @blp.login_required("admin")
    @blp.arguments(schemas.UserQuerySchema, location="query")
    @blp.response(200, schemas.UserListSchema)
    def get(self, args):
        """Search users"""
        rows, total = services.list_users(**args)
        return {"list": rows, "total": total}

    @blp.login_required("admin")
    @blp.arguments(schemas.UserCreateSchema)
    @blp.response(201, schemas.UserSchema)
    def post(self, body):
        """Create a staff, IB or client user"""
        return services.create_user(body, actor=current_user, client=client_info_from_request())


@blp.route("/users/<int:user_id>")
class UserItem(MethodView):
    @blp.login_required("admin")
    @blp.response(200, schemas.UserSchema)
    def get(self, user_id):
        """One user"""
        return services.get_user(user_id)

    @blp.login_required("admin")
    @blp.arguments(schemas.UserUpdateSchema)
    @blp.response(200, schemas.UserSchema)
    def patch(self, body, user_id):
        """Enable/disable, promote a client to IB, set the parent IB"""
        return services.update_user(user_id, body, actor=current_user, client=client_info_from_request())


@blp.route("/audit-logs")
class AuditLogs(MethodView):
    @blp.login_required("admin")
    @blp.arguments(schemas.AuditLogQuerySchema, location="query")
    @blp.response(200, schemas.AuditLogListSchema)
    def get(self, args):
        """Who did what, when, from where (newest first)"""
        rows, total = services.list_audit_logs(**args)
        return {"list": rows, "total": total}
