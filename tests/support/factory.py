"""Builds test data through the same services the routes use."""

import itertools
import re
import time

from crm_app.admin.services import create_user

_counter = itertools.count(1)
PASSWORD = "Passw0rd1"


class Factory:
    def __init__(self, app):
        self.app = app

    def user(self, user_type="client", email=None, password=PASSWORD, parent=None, **extra):
        email = email or f"{user_type}{next(_counter)}@example.test"
        values = {
            "email": email,
            "password": password,
            "user_type": user_type,
            "parent_ib_id": parent.id if parent else None,
            **extra,
        }
        return create_user(values, actor=None, client=None)

    def admin(self, **kw):
        return self.user("admin", **kw)

    def ib(self, **kw):
        return self.user("ib", **kw)

    def approved_kyc(self, user, first_name="Ann", last_name="Client", country="GB"):
        """Give `user` approved KYC with this legal name, as the app does: the client saves
        and submits the identity module, an admin approves the review item. When the broker
        has no KYC form yet, a form of only that module is set up first."""
        from crm_app.kyc.demo import field
        from crm_app.kyc.services import load_form, save_kyc, update_form_module
        from crm_app.review.services import approve_review_item

        if not load_form():
            update_form_module(
                {
                    "module": "identity",
                    "name": "Personal details",
                    "is_enabled": True,
                    "fields": [
                        {**definition, "is_enabled": True}
                        for definition in (
                            field("first_name", "First name"),
                            field("last_name", "Last name"),
                            field("country", "Country", "country", "country_select"),
                        )
                    ],
                }
            )
        identity = {"first_name": first_name, "last_name": last_name, "country": country}
        profile = save_kyc(user, "all", {"identity": identity})
        approve_review_item(profile.review_item_id, self.admin())
        return profile

    def login(self, client, email, password=PASSWORD):
        response = client.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def headers(self, client, user, password=PASSWORD):
        return {"Authorization": f"Bearer {self.login(client, user.email, password)['token']}"}

    def email_code(self, client, smtp_sink, run_jobs, email, scene):
        """Ask for a code through the API, deliver it with the worker, read it from the mail."""
        response = client.post(
            "/api/v1/auth/email-code", json={"email": email, "scene": scene, "received_at": int(time.time())}
        )
        assert response.status_code == 200, response.get_json()
        run_jobs()
        texts = smtp_sink.texts_to(email)
        assert texts, "no mail arrived"
        return re.search(r"\b(\d{6})\b", texts[-1]).group(1)
