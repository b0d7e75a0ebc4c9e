"""The IB referral tree as a closure table (see IbTreePath)."""

from sqlalchemy import and_, delete, insert, select

from crm_app.auth.models import IbTreePath, User
from crm_app.common.errors import ValidationFailed
from crm_app.extensions import db


def add_tree_node(user):
    """A new user: its self row plus one row per ancestor of its parent (caller commits)."""
    db.session.add(IbTreePath(ancestor_id=user.id, descendant_id=user.id, depth=0))
    if user.parent_ib_id:
        db.session.execute(
            insert(IbTreePath).from_select(
                ["ancestor_id", "descendant_id", "depth"],
                select(IbTreePath.ancestor_id, db.literal(user.id), IbTreePath.depth + 1).where(
                    IbTreePath.descendant_id == user.parent_ib_id
                ),
            )
        )


def is_descendant(candidate_id, ancestor_id):
    return (
        db.session.scalar(
            select(IbTreePath.depth).where(
                IbTreePath.ancestor_id == ancestor_id, IbTreePath.descendant_id == candidate_id
            )
        )
        is not None
    )


def move_subtree(user, new_parent):
    """Re-parent `user` with everything below it; refuses a cycle (caller commits)."""
    if new_parent is not None:
        if new_parent.user_type != "ib":
            raise ValidationFailed(code="invalid_parent_ib", errors={"parent_ib_id": ["The parent must be an IB."]})
        if new_parent.id == user.id or is_descendant(new_parent.id, user.id):
            raise ValidationFailed(
                code="invalid_parent_ib", errors={"parent_ib_id": ["This parent would create a cycle."]}
            )
    subtree = select(IbTreePath.descendant_id).where(IbTreePath.ancestor_id == user.id)
    old_ancestors = select(IbTreePath.ancestor_id).where(
        IbTreePath.descendant_id == user.id, IbTreePath.ancestor_id != user.id
    )
    # Detach: drop every path from an ancestor outside the subtree into the subtree.
    db.session.execute(
        delete(IbTreePath)
        .where(
            IbTreePath.descendant_id.in_(subtree.scalar_subquery()),
            IbTreePath.ancestor_id.in_(old_ancestors.scalar_subquery()),
        )
        .execution_options(synchronize_session=False)
    )
    if new_parent is not None:
        above = (
            select(IbTreePath.ancestor_id, IbTreePath.depth).where(IbTreePath.descendant_id == new_parent.id).subquery()
        )
        below = select(IbTreePath.descendant_id, IbTreePath.depth).where(IbTreePath.ancestor_id == user.id).subquery()
        db.session.execute(
            insert(IbTreePath).from_select(
                ["ancestor_id", "descendant_id", "depth"],
                select(above.c.ancestor_id, below.c.descendant_id, above.c.depth + below.c.depth + 1).select_from(
                    above.join(below, and_(db.true()))
                ),
            )
        )
    user.parent_ib_id = new_parent.id if new_parent is not None else None


def descendants_query(ib_id, include_self=False):
    """A select of the ids of every user below `ib_id`, at any depth."""
    query = select(IbTreePath.descendant_id).where(IbTreePath.ancestor_id == ib_id)
    if not include_self:
        query = query.where(IbTreePath.depth > 0)
    return query


def descendants_of(ib_id):
    return db.session.scalars(
        select(User).where(User.id.in_(descendants_query(ib_id).scalar_subquery())).order_by(User.id)
    ).all()
