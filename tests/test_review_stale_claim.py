"""A review item whose approving request died after claiming it (the database went
away before the failure could be recorded) is not stuck: once the claim is stale, an
admin approves it again, and the effect happens once."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from crm_app.common.timeutil import utcnow
from crm_app.extensions import db
from crm_app.review import services as review_services
from crm_app.review.models import ReviewItem
from crm_app.trading import services
from crm_app.trading.models import TradingAccount
from tests.support.trading import apply_live, pending_application_id


def test_a_stale_claim_can_be_approved_again(client, factory, book, kyc_approved, monkeypatch):
    headers = factory.headers(client, factory.user())
    apply_live(client, headers, book)
    admin = book["admin_headers"]
    item_id = pending_application_id(client, book)

    # The request dies after its claim, and cannot even record why.
    def crash(*args, **kwargs):
        raise RuntimeError("worker killed")

    monkeypatch.setattr(services, "record_created_account", crash)
    monkeypatch.setattr(review_services, "_record_failure", crash)
    client.application.config["PROPAGATE_EXCEPTIONS"] = True
    try:
        with pytest.raises(RuntimeError):
            client.post(f"/api/v1/admin/audits/{item_id}/approve", headers=admin, json={})
    finally:
        client.application.config["PROPAGATE_EXCEPTIONS"] = None
    monkeypatch.undo()
    db.session.rollback()

    item = client.get(f"/api/v1/admin/audits/{item_id}", headers=admin).get_json()
    assert item["status"] == "auditing" and not item["last_error"]
    # While the claim is fresh, the other request might still be running: refused.
    assert client.post(f"/api/v1/admin/audits/{item_id}/approve", headers=admin, json={}).status_code == 409

    stale = utcnow() - timedelta(seconds=client.application.config["REVIEW_CLAIM_STALE_SECONDS"] + 1)
    db.session.execute(update(ReviewItem).where(ReviewItem.id == item_id).values(updated_at=stale))
    db.session.commit()
    retry = client.post(f"/api/v1/admin/audits/{item_id}/approve", headers=admin, json={})
    assert retry.status_code == 200, retry.get_json()
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(TradingAccount)) == 1
    assert db.session.scalar(select(TradingAccount)).login == book["live_server"]["next_login"]
