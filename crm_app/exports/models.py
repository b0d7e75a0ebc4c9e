"""One row per export a person asked for: its id is the RQ job id and the link's subject."""

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crm_app.common.timeutil import utcnow
from crm_app.extensions import db

EXPORT_FORMATS = ("csv", "xlsx", "pdf")
# queued: waiting for a worker; running: rows are being written; done: the file is in
# storage; failed: `error` says why.
EXPORT_STATUSES = ("queued", "running", "done", "failed")


class ExportJob(db.Model):
    __tablename__ = "export_jobs"

    # Random and URL-safe: it appears in links, so it must not be guessable.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    report: Mapped[str] = mapped_column(String(64))
    # The filters of the matching list, as JSON (times tagged, see services.encode_filters).
    filters: Mapped[dict] = mapped_column(JSON, default=dict)
    format: Mapped[str] = mapped_column(String(8))
    # The language of the caller when it asked: the worker has no request to read it from.
    language: Mapped[str] = mapped_column(String(8), default="en")
    status: Mapped[str] = mapped_column(String(16), default="queued")
    rows_done: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_total: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    storage_key: Mapped[str | None] = mapped_column(String(255))
    file_name: Mapped[str | None] = mapped_column(String(255))
    content_type: Mapped[str | None] = mapped_column(String(128))
    file_size: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()

    __table_args__ = (
        Index("ix_export_jobs_owner", "owner_id", "created_at"),
        Index("ix_export_jobs_expires", "expires_at"),
    )

    @property
    def progress(self):
        """Percent of rows written, once the total is known."""
        if self.status == "done":
            return 100
        if not self.rows_total:
            return 0
        return min(99, int(self.rows_done * 100 / self.rows_total))
