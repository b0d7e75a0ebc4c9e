"""Admin-side rules: the audit log and user management."""

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from crm_app.admin.models import AuditLog
from crm_app.common.timeutil import utcnow
from crm_app.extensions import db


def record_audit_log(action, actor=None, client=None, target_type=None, target_id=None, details=None):
    """Add an audit-log row to the current transaction (the caller commits)."""
    entry = AuditLog(
        actor_id=actor.id if actor is not None else None,
        actor_email=actor.email if actor is not None else None,
        action=action,
        target_type=target_type,
        target_id=str(target_id) if target_id is not None else None,
        ip=client.ip if client else None,
        user_agent=client.user_agent if client else None,
        details=details or {},
        created_at=utcnow(),
    )
    db.session.add(entry)
    return entry


def list_audit_logs(
    page, size, actor_id=None, action=None, target_type=None, target_id=None, start_time=None, end_time=None, q=None
):
    query = select(AuditLog)
    if actor_id is not None:
        query = query.where(AuditLog.actor_id == actor_id)
    if action:
        # A value ending with "." ("auth.") selects a whole family of events.
        if action.endswith("."):
            query = query.where(AuditLog.action.startswith(action, autoescape=True))
        else:
            query = query.where(AuditLog.action == action)
    if target_type:
        query = query.where(AuditLog.target_type == target_type)
    if target_id:
        query = query.where(AuditLog.target_id == str(target_id))
    if start_time:
        query = query.where(AuditLog.created_at >= start_time)
    if end_time:
        query = query.where(AuditLog.created_at <= end_time)
    if q:
        term = q.lower()
        query = query.where(
            or_(
                func.lower(AuditLog.actor_email).contains(term, autoescape=True),
                AuditLog.ip.contains(term, autoescape=True),
            )
        )
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.session.scalars(
        query.order_by(AuditLog.created_at.desc(), AuditLog.id.desc()).limit(size).offset((page - 1) * size)
    ).all()
    return rows, total


# Users ------------------------------------------------------------------------


def list_users(page, size, q=None, user_type=None, status=None, parent_ib_id=None):
    from crm_app.auth.models import User

    query = select(User)
    if q:
        term = q.strip().casefold()
        query = query.where(
            or_(
                User.email_key.contains(term, autoescape=True),
                func.lower(User.first_name).contains(term, autoescape=True),
                func.lower(User.last_name).contains(term, autoescape=True),
                User.referral_code == q.strip().upper(),
            )
        )
    if user_type:
        query = query.where(User.user_type == user_type)
    if status:
        query = query.where(User.status == status)
    if parent_ib_id is not None:
        query = query.where(User.parent_ib_id == parent_ib_id)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.session.scalars(query.order_by(User.id.desc()).limit(size).offset((page - 1) * size)).all()
    return rows, total


def get_user(user_id):
    from crm_app.auth.models import User
    from crm_app.common.errors import NotFound

    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound()
    return user


def get_ib(user_id, field="parent_ib_id"):
    from crm_app.auth.models import User
    from crm_app.common.errors import ValidationFailed

    ib = db.session.get(User, user_id)
    if ib is None or ib.user_type != "ib":
        raise ValidationFailed(code="invalid_parent_ib", errors={field: ["No IB with this id."]})
    return ib


def check_email_address(email):
    """The routes' schemas check this too; the CLI and other callers come through here."""
    from marshmallow import ValidationError, validate

    from crm_app.common.errors import ValidationFailed

    try:
        validate.Email()(email.strip())
        validate.Length(max=254)(email.strip())
    except ValidationError:
        raise ValidationFailed(errors={"email": ["Not a valid email address."]}) from None


def create_user(values, actor, client):
    """Create a staff (admin), IB or client user from the back office."""
    from crm_app.auth import passwords
    from crm_app.auth.models import User
    from crm_app.auth.services import email_key, email_taken_error, find_user_by_email, generate_referral_code
    from crm_app.auth.tree import add_tree_node

    check_email_address(values["email"])
    passwords.check_password_policy(values["password"], email=values["email"])
    if find_user_by_email(values["email"]) is not None:
        raise email_taken_error()
    parent = get_ib(values["parent_ib_id"]) if values.get("parent_ib_id") else None
    if parent is not None and values["user_type"] == "admin":
        from crm_app.common.errors import ValidationFailed

        raise ValidationFailed(code="invalid_parent_ib", errors={"parent_ib_id": ["Staff users have no IB."]})
    user = User(
        email=values["email"].strip(),
        email_key=email_key(values["email"]),
        password_hash=passwords.hash_password(values["password"]),
        user_type=values["user_type"],
        status=values.get("status", "enabled"),
        first_name=values.get("first_name", ""),
        last_name=values.get("last_name", ""),
        parent_ib_id=parent.id if parent else None,
        referral_code=generate_referral_code() if values["user_type"] == "ib" else None,
    )
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise email_taken_error() from None
    add_tree_node(user)
    record_audit_log(
        "user.create",
        actor=actor,
        client=client,
        target_type="user",
        target_id=user.id,
        details={"user_type": user.user_type, "parent_ib_id": user.parent_ib_id},
    )
    db.session.commit()
    return user


IB_TREE_LOCK_ID = 7_240_001


def update_user(user_id, changes, actor, client):
    """Enable/disable, promote a client to IB, move under another IB, rename."""
    from crm_app.auth.models import AuthSession
    from crm_app.auth.services import generate_referral_code
    from crm_app.auth.tree import move_subtree
    from crm_app.common.errors import ValidationFailed

    if "parent_ib_id" in changes and db.session.get_bind().dialect.name == "postgresql":
        # One lock for the whole tree, taken before any row lock: two admins moving
        # users at once are serialised instead of deadlocking on each other's rows.
        db.session.execute(select(func.pg_advisory_xact_lock(IB_TREE_LOCK_ID)))
    user = get_user(user_id)
    # Lock the row: two admins editing the same user must not interleave.
    db.session.refresh(user, with_for_update=True)
    changed = {}

    new_type = changes.get("user_type")
    if new_type and new_type != user.user_type:
        if not (user.user_type == "client" and new_type == "ib"):
            raise ValidationFailed(
                code="invalid_user_type_change",
                errors={"user_type": [f"A {user.user_type} cannot become {new_type}; only client to ib."]},
            )
        user.user_type = "ib"
        user.referral_code = user.referral_code or generate_referral_code()
        changed["user_type"] = "ib"

    if "parent_ib_id" in changes and changes["parent_ib_id"] != user.parent_ib_id:
        if user.user_type == "admin":
            raise ValidationFailed(code="invalid_parent_ib", errors={"parent_ib_id": ["Staff users have no IB."]})
        parent = get_ib(changes["parent_ib_id"]) if changes["parent_ib_id"] else None
        move_subtree(user, parent)
        changed["parent_ib_id"] = user.parent_ib_id

    new_status = changes.get("status")
    if new_status and new_status != user.status:
        if user.id == actor.id:
            raise ValidationFailed(errors={"status": ["You cannot disable yourself."]})
        user.status = new_status
        changed["status"] = new_status
        if new_status == "disabled":
            db.session.execute(
                AuthSession.__table__.update()
                .where(AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )

    for field in ("first_name", "last_name"):
        if field in changes and changes[field] != getattr(user, field):
            setattr(user, field, changes[field])
            changed[field] = changes[field]

    if changed:
        record_audit_log(
            "user.update", actor=actor, client=client, target_type="user", target_id=user.id, details=changed
        )
    db.session.commit()
    return user
