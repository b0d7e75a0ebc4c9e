from marshmallow import fields, validate

from crm_app.auth.models import USER_STATUSES, USER_TYPES
from crm_app.common.schemas import BrokerTime, PageQuerySchema, Schema, TimeFilter


class UserSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    first_name = fields.String()
    last_name = fields.String()
    full_name = fields.String()
    user_type = fields.String()
    status = fields.String()
    parent_ib_id = fields.Integer(allow_none=True)
    referral_code = fields.String(allow_none=True)
    created_at = BrokerTime()
    last_login_at = BrokerTime(allow_none=True)


class UserListSchema(Schema):
    list = fields.List(fields.Nested(UserSchema))
    total = fields.Integer()


class UserQuerySchema(PageQuerySchema):
    q = fields.String(validate=validate.Length(max=254), metadata={"description": "Email or name, partial match"})
    user_type = fields.String(validate=validate.OneOf(USER_TYPES))
    status = fields.String(validate=validate.OneOf(USER_STATUSES))
    parent_ib_id = fields.Integer()


class UserCreateSchema(Schema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = fields.String(required=True, load_only=True, validate=validate.Length(max=128))
    user_type = fields.String(
        required=True, validate=validate.OneOf(USER_TYPES), metadata={"description": "`admin` creates a staff user"}
    )
    first_name = fields.String(validate=validate.Length(max=100))
    last_name = fields.String(validate=validate.Length(max=100))
    parent_ib_id = fields.Integer(allow_none=True)
    status = fields.String(validate=validate.OneOf(USER_STATUSES))


class UserUpdateSchema(Schema):
    status = fields.String(validate=validate.OneOf(USER_STATUSES))
    user_type = fields.String(validate=validate.OneOf(USER_TYPES), metadata={"description": "`ib` promotes a client"})
    parent_ib_id = fields.Integer(allow_none=True, metadata={"description": "null detaches from any IB"})
    first_name = fields.String(validate=validate.Length(max=100))
    last_name = fields.String(validate=validate.Length(max=100))


class AuditLogSchema(Schema):
    id = fields.Integer()
    actor_id = fields.Integer(allow_none=True)
    actor_email = fields.String(allow_none=True)
    action = fields.String()
    target_type = fields.String(allow_none=True)
    target_id = fields.String(allow_none=True)
    ip = fields.String(allow_none=True)
    user_agent = fields.String(allow_none=True)
    details = fields.Dict()
    created_at = BrokerTime()


class AuditLogListSchema(Schema):
    list = fields.List(fields.Nested(AuditLogSchema))
    total = fields.Integer()


class AuditLogQuerySchema(PageQuerySchema):
    actor_id = fields.Integer()
    action = fields.String(validate=validate.Length(max=64), metadata={"description": "Action or prefix (`auth.`)"})
    target_type = fields.String(validate=validate.Length(max=32))
    target_id = fields.String(validate=validate.Length(max=64))
    start_time = TimeFilter()
    end_time = TimeFilter(end=True)
    q = fields.String(validate=validate.Length(max=254), metadata={"description": "Actor email or IP, partial"})
