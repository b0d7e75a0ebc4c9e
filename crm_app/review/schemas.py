from marshmallow import fields, validate

from crm_app.common.schemas import BrokerTime, Computed, PageQuerySchema, Schema
from crm_app.review.models import REVIEW_STATUSES, REVIEW_TYPES


class ReviewUserSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    full_name = fields.String()
    user_type = fields.String()


class ReviewItemSchema(Schema):
    id = fields.Integer()
    type = fields.String()
    status = fields.String()
    user = fields.Nested(ReviewUserSchema)
    object_id = fields.Integer()
    object_ref = fields.String(metadata={"description": "Order number or id of the object under review"})
    auditor_name = Computed(lambda item: item.auditor.full_name or item.auditor.email if item.auditor else "")
    remark = fields.String()
    last_error = fields.String(allow_none=True, metadata={"description": "Why the approval's effect failed"})
    created_at = BrokerTime()
    decided_at = BrokerTime(allow_none=True)


class ReviewItemDetailSchema(ReviewItemSchema):
    object = fields.Dict(metadata={"description": "The object under review"})


class ReviewItemListSchema(Schema):
    list = fields.List(fields.Nested(ReviewItemSchema))
    total = fields.Integer()


class ReviewQuerySchema(PageQuerySchema):
    type = fields.String(validate=validate.OneOf(REVIEW_TYPES))
    status = fields.String(validate=validate.OneOf(REVIEW_STATUSES))
    user_id = fields.Integer()


class ApproveSchema(Schema):
    remark = fields.String(validate=validate.Length(max=1000), load_default="")


class RejectSchema(Schema):
    remark = fields.String(required=True, validate=validate.Length(min=1, max=1000))
