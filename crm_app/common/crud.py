"""Admin CRUD for broker configuration resources, written once.

Each resource is a model, a schema for what admins send and see, and optional
hooks to turn input into column values (e.g. encrypt a password) and to refuse a
delete that would orphan data. Every change is audit-logged.
"""

from collections.abc import Callable
from dataclasses import dataclass

from flask.views import MethodView
from marshmallow import fields
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from crm_app.admin.services import record_audit_log
from crm_app.common.api import current_user
from crm_app.common.context import client_info_from_request
from crm_app.common.errors import Conflict, NotFound
from crm_app.common.schemas import PageQuerySchema, Schema
from crm_app.extensions import db


@dataclass
class Resource:
    name: str  # URL segment, e.g. "trading-servers"
    model: type
    schema: type  # dump + create (required fields)
    update_schema: type  # PUT: every field optional
    prepare: Callable[[dict, object | None], dict] = lambda values, obj: values
    before_delete: Callable[[object], None] = lambda obj: None
    order_by: str = "id"


def get_object(resource, object_id):
    obj = db.session.get(resource.model, object_id)
    if obj is None:
        raise NotFound()
    return obj


def list_objects(resource, page, size):
    total = db.session.scalar(select(func.count()).select_from(resource.model))
    rows = db.session.scalars(
        select(resource.model)
        .order_by(getattr(resource.model, resource.order_by))
        .limit(size)
        .offset((page - 1) * size)
    ).all()
    return rows, total


def _flush_or_conflict():
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(errors={"_schema": ["This conflicts with an existing record or one that uses it."]}) from None


def create_object(resource, values, actor, client):
    obj = resource.model(**resource.prepare(values, None))
    db.session.add(obj)
    _flush_or_conflict()
    record_audit_log(
        f"{resource.name}.create",
        actor=actor,
        client=client,
        target_type=resource.name,
        target_id=obj.id,
        details={"fields": sorted(values)},
    )
    db.session.commit()
    return obj


def update_object(resource, object_id, values, actor, client):
    obj = get_object(resource, object_id)
    for field, value in resource.prepare(values, obj).items():
        setattr(obj, field, value)
    _flush_or_conflict()
    record_audit_log(
        f"{resource.name}.update",
        actor=actor,
        client=client,
        target_type=resource.name,
        target_id=obj.id,
        details={"fields": sorted(values)},
    )
    db.session.commit()
    return obj


def delete_object(resource, object_id, actor, client):
    obj = get_object(resource, object_id)
    resource.before_delete(obj)
    db.session.delete(obj)
    _flush_or_conflict()
    record_audit_log(
        f"{resource.name}.delete", actor=actor, client=client, target_type=resource.name, target_id=object_id
    )
    db.session.commit()


def register_admin_crud(blp, resource):
    """GET/POST `/{name}` and GET/PUT/DELETE `/{name}/{id}` on an admin blueprint."""
    list_schema = type(
        f"Admin{resource.schema.__name__.removesuffix('Schema')}ListSchema",
        (Schema,),
        {"list": fields.List(fields.Nested(resource.schema)), "total": fields.Integer()},
    )
    label = resource.name.replace("-", " ")

    class Collection(MethodView):
        @blp.login_required("admin")
        @blp.arguments(PageQuerySchema, location="query")
        @blp.response(200, list_schema)
        def get(self, args):
            rows, total = list_objects(resource, **args)
            return {"list": rows, "total": total}

        @blp.login_required("admin")
        @blp.arguments(resource.schema)
        @blp.response(201, resource.schema)
        @blp.error_responses(409)
        def post(self, body):
            return create_object(resource, body, current_user, client_info_from_request())

    class Item(MethodView):
        @blp.login_required("admin")
        @blp.response(200, resource.schema)
        def get(self, object_id):
            return get_object(resource, object_id)

        @blp.login_required("admin")
        @blp.arguments(resource.update_schema)
        @blp.response(200, resource.schema)
        @blp.error_responses(409)
        def put(self, body, object_id):
            return update_object(resource, object_id, body, current_user, client_info_from_request())

        @blp.login_required("admin")
        @blp.response(204)
        @blp.error_responses(409)
        def delete(self, object_id):
            delete_object(resource, object_id, current_user, client_info_from_request())

    Collection.get.__doc__ = f"List {label}"
    Collection.post.__doc__ = f"Create one of the {label}"
    Item.get.__doc__ = f"One of the {label}"
    Item.put.__doc__ = f"Change one of the {label} (fields not sent stay)"
    Item.delete.__doc__ = f"Delete one of the {label} (409 while in use)"
    Collection.__name__ = f"{resource.model.__name__}Collection"
    Item.__name__ = f"{resource.model.__name__}Item"
    blp.route(f"/{resource.name}", endpoint=f"{resource.name}-collection")(Collection)
    blp.route(f"/{resource.name}/<int:object_id>", endpoint=f"{resource.name}-item")(Item)
