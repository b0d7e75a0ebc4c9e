"""Who sees which rows: a client its own, an IB everyone below it (and itself), an admin all."""

from sqlalchemy import true

from crm_app.auth.tree import descendants_query


def visible_to(user, user_id_column):
    """A WHERE clause restricting `user_id_column` to the caller's scope (one indexed lookup)."""
    if user.user_type == "admin":
        return true()
    if user.user_type == "ib":
        return user_id_column.in_(descendants_query(user.id, include_self=True).scalar_subquery())
    return user_id_column == user.id
