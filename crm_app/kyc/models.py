"""KYC: the broker-configured form and questionnaires, one profile per user, and
electronic identity verification sessions."""

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_app.common.timeutil import utcnow
from crm_app.extensions import db

MODULES = (
    "identity",
    "questionnaire",
    "family",
    "contact",
    "job",
    "authentication_accessory",
    "authentication",
    "agreement",
    "e_verify",
)
# How #28 groups the modules; each group's status is one of #27's `*_status` fields.
MODULE_GROUPS = {
    "identity": ("identity", "authentication", "authentication_accessory"),
    "kyc": ("questionnaire", "family", "contact", "job"),
    "agreement": ("agreement",),
}
KYC_STATUSES = ("filling", "pending", "approved", "rejected")
EVERIFY_STATUSES = ("pending", "passed", "rejected", "expired")


class KycFormModule(db.Model):
    """One module of the KYC form as the broker configures it."""

    __tablename__ = "kyc_form_modules"

    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    sort: Mapped[int] = mapped_column(default=0)
    is_enabled: Mapped[bool] = mapped_column(default=True)
    # Only meaningful for modules without fields (`e_verify`): it must be done before submitting.
    is_required: Mapped[bool] = mapped_column(default=False)
    description: Mapped[str] = mapped_column(String(500), default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    fields: Mapped[list["KycFormField"]] = relationship(
        order_by=lambda: (KycFormField.sort, KycFormField.id), cascade="all, delete-orphan", lazy="selectin"
    )


class KycFormField(db.Model):
    __tablename__ = "kyc_form_fields"

    id: Mapped[int] = mapped_column(primary_key=True)
    module_key: Mapped[str] = mapped_column(ForeignKey("kyc_form_modules.key", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(32))
    component_type: Mapped[str] = mapped_column(String(32))
    is_required: Mapped[bool] = mapped_column(default=False)
    is_enabled: Mapped[bool] = mapped_column(default=True)
    # [{label, value, required_fields?}]: choosing an option may make other fields required.
    options: Mapped[list] = mapped_column(JSON, default=list)
    sort: Mapped[int] = mapped_column(default=0)
    description: Mapped[str] = mapped_column(String(500), default="")
    # A document the field refers to (the agreement to accept, a template to fill in).
    url: Mapped[str] = mapped_column(String(1024), default="")

    __table_args__ = (UniqueConstraint("module_key", "key", name="uq_kyc_form_fields_module_key_key"),)


class KycQuestionnaire(db.Model):
    __tablename__ = "kyc_questionnaires"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(String(500), default="")
    is_enabled: Mapped[bool] = mapped_column(default=True)
    sort: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    questions: Mapped[list["KycQuestion"]] = relationship(
        order_by=lambda: (KycQuestion.sort, KycQuestion.id), cascade="all, delete-orphan", lazy="selectin"
    )


class KycQuestion(db.Model):
    __tablename__ = "kyc_questions"

    id: Mapped[int] = mapped_column(primary_key=True)
    questionnaire_id: Mapped[int] = mapped_column(ForeignKey("kyc_questionnaires.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    question: Mapped[str] = mapped_column(String(500))
    # radio / select: one option value; checkbox: a list of them; input / textarea: free text.
    component_type: Mapped[str] = mapped_column(String(32))
    is_required: Mapped[bool] = mapped_column(default=True)
    options: Mapped[list] = mapped_column(JSON, default=list)
    sort: Mapped[int] = mapped_column(default=0)

    __table_args__ = (UniqueConstraint("questionnaire_id", "key", name="uq_kyc_questions_questionnaire_id_key"),)


class KycProfile(db.Model):
    """One per user: what the user filled in, module by module, and where review stands.

    `status` is the KYC's own state (`filling -> pending -> approved|rejected`, and back
    to `filling` when a rejected KYC is edited); `apply_status` is the state of the
    latest submission, so a user editing after a rejection still sees it was rejected.
    Document links inside `data` are encrypted (see crm_app.kyc.crypto).
    """

    __tablename__ = "kyc_profiles"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="filling", index=True)
    apply_status: Mapped[str] = mapped_column(String(16), default="filling")
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    completed_modules: Mapped[list] = mapped_column(JSON, default=list)
    # `manual` (documents) or `e_verify` (a passed electronic verification), set on submission.
    kyc_way: Mapped[str] = mapped_column(String(32), default="")
    # The latest submission's review item: its remark is the reviewer's word to the user.
    review_item_id: Mapped[int | None] = mapped_column(ForeignKey("review_items.id", ondelete="SET NULL"))
    submitted_at: Mapped[datetime | None] = mapped_column()
    approved_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    user = relationship("User", lazy="select")
    review_item = relationship("ReviewItem", lazy="select")

    @property
    def remark(self):
        return (self.review_item.remark or "") if self.review_item is not None else ""


class EVerifySession(db.Model):
    """One electronic identity verification attempt with a vendor."""

    __tablename__ = "everify_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # The user's n-th session: attempts are limited.
    attempt: Mapped[int] = mapped_column(default=1)
    success_url: Mapped[str] = mapped_column(String(1024))
    failed_url: Mapped[str] = mapped_column(String(1024))
    redirect_url: Mapped[str] = mapped_column(String(1024))
    vendor_ref: Mapped[str | None] = mapped_column(String(128))
    result_code: Mapped[str | None] = mapped_column(String(64))
    result_message: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expire_at: Mapped[datetime] = mapped_column()
    verified_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_everify_sessions_user", "user_id", "created_at"),)
