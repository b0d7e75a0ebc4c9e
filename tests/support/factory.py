"""Builds test data through the same services the routes use."""

import itertools
import re
import time

from crm_app.admin.services import create_user

_counter = itertools.count(1)
PASSWORD = "Quartz-Lantern-58"


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
