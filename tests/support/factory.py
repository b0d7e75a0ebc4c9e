"""Builds test data through the same services the routes use."""

import io
import itertools
import re
import time

from crm_app.admin.services import create_user

_counter = itertools.count(1)
PASSWORD = "Quartz-Lantern-58"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def answer_every_question(questionnaire):
    """A valid answer to each question: a choice where there are options, else some text."""
    answers = []
    for question in questionnaire.questions:
        if question.component_type == "checkbox":
            answer = [question.options[0]["value"]]
        elif question.options:
            answer = question.options[-1]["value"]
        else:
            answer = "Grow my savings."
        answers.append({"question_id": question.id, "answer": answer})
    return answers


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
        """Give `user` approved KYC with this legal name, as the app does: the client fills
        in and submits the form, an admin approves the review item. With no KYC form yet, a
        form of only the identity module is set up first; otherwise the form must be the
        demo broker's (`crm_app.kyc.demo`), which is filled in completely."""
        from crm_app.kyc.services import enabled_questionnaires, load_form, save_kyc, save_questionnaire
        from crm_app.review.services import approve_review_item

        form = load_form() or self._identity_only_form()
        data = {"identity": {"first_name": first_name, "last_name": last_name, "country": country}}
        if set(form) - {"identity"}:
            from tests.support.kyc_form import demo_kyc_modules

            data = demo_kyc_modules(lambda: self._upload_url(user), first_name, last_name)
            data["identity"]["country"] = country
            for questionnaire in enabled_questionnaires():
                save_questionnaire(user, questionnaire.id, answer_every_question(questionnaire))
        profile = save_kyc(user, "all", data)
        approve_review_item(profile.review_item_id, self.admin())
        return profile

    def _identity_only_form(self):
        from crm_app.kyc.demo import field
        from crm_app.kyc.services import load_form, update_form_module

        definitions = (
            field("first_name", "First name"),
            field("last_name", "Last name"),
            field("country", "Country", "country", "country_select"),
        )
        update_form_module(
            {
                "module": "identity",
                "name": "Personal details",
                "is_enabled": True,
                "fields": [{**definition, "is_enabled": True} for definition in definitions],
            }
        )
        return load_form()

    def _upload_url(self, user):
        from crm_app.uploads.services import save_upload, upload_url

        return upload_url(save_upload(user, io.BytesIO(PNG), "scan.png"))

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
