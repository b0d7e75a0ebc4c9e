"""KYC: the form (#28), saving modules and submitting (#30), questionnaire answers (#18),
status and data (#27, #50), review, and the broker's form editor."""

import io
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from tests.support.kyc_form import demo_kyc_modules

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def kyc_form(factory):
    from crm_app.kyc.demo import seed_kyc_demo

    seed_kyc_demo()


@pytest.fixture
def client_user(factory, kyc_form):
    return factory.user(first_name="", last_name="")


@pytest.fixture
def auth(client, factory, client_user):
    return factory.headers(client, client_user)


@pytest.fixture
def admin_auth(client, factory):
    return factory.headers(client, factory.admin())


def upload(client, headers):
    response = client.post(
        "/api/v1/uploads",
        headers=headers,
        data={"file": (io.BytesIO(PNG), "scan.png")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["url"]


def field_modules(client, headers):
    """Every module but the questionnaire, filled in correctly."""
    return demo_kyc_modules(lambda: upload(client, headers))


def form(client, headers):
    response = client.get("/api/v1/client/kyc/form", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def questionnaire_answers(client, headers):
    """An answer to every question of the form's questionnaire module."""
    module = next(m for m in form(client, headers)["kyc"]["modules"] if m["module"]["key"] == "questionnaire")
    answers = []
    for field in module["fields"]:
        if field["component_type"] == "checkbox":
            answer = [field["options"][0]["value"]]
        elif field["options"]:
            answer = field["options"][-1]["value"]
        else:
            answer = "Grow my savings."
        answers.append({"question_id": field["question_id"], "answer": answer})
    return module["fields"][0]["questionnaire_id"], answers


def save(client, headers, module, data):
    return client.put("/api/v1/client/kyc", headers=headers, json={"current_module": module, "kyc_data": data})


def fill_everything(client, headers):
    for module, data in field_modules(client, headers).items():
        response = save(client, headers, module, {module: data})
        assert response.status_code == 200, (module, response.get_json())
        assert response.get_json() == {}
    questionnaire_id, answers = questionnaire_answers(client, headers)
    response = client.put(
        "/api/v1/client/kyc/questionnaire",
        headers=headers,
        json={"questionnaire_id": questionnaire_id, "answers": answers},
    )
    assert response.status_code == 200, response.get_json()


def submit(client, headers):
    response = save(client, headers, "all", {})
    assert response.status_code == 200, response.get_json()


def kyc(client, headers, path="/api/v1/client/kyc"):
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def kyc_review_item(client, admin_auth):
    response = client.get("/api/v1/admin/audits?type=kyc&status=pending", headers=admin_auth)
    assert response.status_code == 200
    items = response.get_json()["list"]
    assert len(items) == 1
    return items[0]


# The form and progress -------------------------------------------------------------------


def test_form_lists_enabled_modules_by_group_with_fields_and_statuses(client, auth):
    body = form(client, auth)
    assert list(body) == ["agreement", "apply_status", "e_verify", "identity", "kyc", "remark"]
    assert [m["module"]["key"] for m in body["identity"]["modules"]] == [
        "identity",
        "authentication_accessory",
        "authentication",
    ]
    assert [m["module"]["key"] for m in body["kyc"]["modules"]] == ["questionnaire", "family", "contact", "job"]
    identity = body["identity"]["modules"][0]["fields"]
    gender = next(f for f in identity if f["key"] == "gender")
    assert gender["options"] == [{"label": "Male", "value": "male"}, {"label": "Female", "value": "female"}]
    assert gender["is_required"] is True and gender["value"] is None
    assert set(gender) >= {"component_type", "description", "is_enabled", "name", "sort", "type"}
    assert body["identity"]["status"] == "filling" and body["apply_status"] == "filling"
    assert body["e_verify"]["status"] == "not_started" and body["e_verify"]["provider"] == "sim"
    agreement = body["agreement"]["modules"][0]["fields"]
    assert all(f["url"] for f in agreement) and {f["value"] for f in agreement} == {False}
    question = body["kyc"]["modules"][0]["fields"][0]
    assert question["question_id"] and question["questionnaire_name"]


def test_saving_a_module_shows_in_the_form_and_tracks_progress(client, auth):
    response = save(client, auth, "identity", {"identity": field_modules(client, auth)["identity"]})
    assert response.status_code == 200 and response.get_json() == {}

    body = kyc(client, auth)
    assert body["completed_module"] == ["identity"]
    assert body["kyc_data"]["identity"] == {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "birthday": "1990-05-17",
        "gender": "female",
        "country": "GB",
        "full_name": "Ada Lovelace",
    }
    assert body["kyc_status"] == "filling" and body["identity_status"] == "filling"
    assert body["register_datetime"] and body["kyc_approved_at"] is None
    fields = {f["key"]: f["value"] for f in form(client, auth)["identity"]["modules"][0]["fields"]}
    assert fields["country"] == "GB"


def test_group_status_is_completed_once_all_its_modules_are(client, auth):
    data = field_modules(client, auth)
    for module in ("identity", "authentication_accessory", "authentication"):
        assert save(client, auth, module, {module: data[module]}).status_code == 200
    body = kyc(client, auth)
    assert body["identity_status"] == "completed"
    assert body["agreement_status"] == "filling"


# The whole flow ---------------------------------------------------------------------------------


def test_fill_submit_review_and_approve(client, auth, admin_auth, client_user):
    from crm_app.kyc.services import kyc_country, kyc_is_approved

    fill_everything(client, auth)
    assert kyc(client, auth)["completed_module"] == [
        "identity",
        "questionnaire",
        "family",
        "contact",
        "job",
        "authentication_accessory",
        "authentication",
        "agreement",
    ]
    submit(client, auth)

    body = kyc(client, auth)
    assert body["kyc_status"] == "pending" and body["apply_status"] == "pending"
    assert body["kyc_way"] == "manual"
    assert save(client, auth, "job", {"job": {"industry_attributes": "it"}}).status_code == 409
    assert save(client, auth, "all", {}).status_code == 409

    item = kyc_review_item(client, admin_auth)
    assert item["user"]["id"] == client_user.id and item["object_ref"].startswith("KYC-")
    detail = client.get(f"/api/v1/admin/audits/{item['id']}", headers=admin_auth)
    assert detail.status_code == 200, detail.get_json()
    described = detail.get_json()["object"]
    assert described["kyc_status"] == "pending" and described["user_id"] == client_user.id
    assert described["kyc_data"]["identity"]["last_name"] == "Lovelace"
    assert described["kyc_data"]["authentication"]["passport"].startswith("/api/v1/uploads/")

    assert not kyc_is_approved(client_user.id)
    response = client.post(f"/api/v1/admin/audits/{item['id']}/approve", headers=admin_auth, json={})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["object"]["kyc_status"] == "approved"

    body = kyc(client, auth)
    assert body["kyc_status"] == "approved" and body["apply_status"] == "approved"
    assert body["identity_status"] == body["agreement_status"] == "approved"
    assert body["kyc_approved_at"]
    assert kyc_is_approved(client_user.id) and kyc_country(client_user.id) == "GB"
    me = client.get(f"/api/v1/admin/users/{client_user.id}", headers=admin_auth).get_json()
    assert (me["first_name"], me["last_name"]) == ("Ada", "Lovelace")

    again = client.post(f"/api/v1/admin/audits/{item['id']}/approve", headers=admin_auth, json={})
    assert again.status_code == 409
    assert save(client, auth, "identity", {"identity": {}}).status_code == 409


def test_rejected_kyc_shows_the_remark_and_can_be_resubmitted(client, auth, admin_auth):
    fill_everything(client, auth)
    submit(client, auth)
    item = kyc_review_item(client, admin_auth)
    no_reason = client.post(f"/api/v1/admin/audits/{item['id']}/reject", headers=admin_auth, json={})
    assert no_reason.status_code == 422
    response = client.post(
        f"/api/v1/admin/audits/{item['id']}/reject",
        headers=admin_auth,
        json={"remark": "The passport scan is blurred."},
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["object"]["kyc_status"] == "rejected"
    again = client.post(f"/api/v1/admin/audits/{item['id']}/approve", headers=admin_auth, json={})
    assert again.status_code == 409

    assert form(client, auth)["remark"] == "The passport scan is blurred."
    body = kyc(client, auth)
    assert body["kyc_status"] == "rejected" and body["apply_status"] == "rejected"

    sharper = {"identification_type": "passport", "passport": upload(client, auth)}
    assert save(client, auth, "authentication", {"authentication": sharper}).status_code == 200
    body = kyc(client, auth)
    assert body["kyc_status"] == "filling" and body["apply_status"] == "rejected"

    submit(client, auth)
    assert kyc(client, auth)["kyc_status"] == "pending"
    second = kyc_review_item(client, admin_auth)
    assert second["id"] != item["id"]
    assert form(client, auth)["remark"] == ""


def test_submitting_with_missing_fields_lists_them_and_opens_no_review(client, auth, admin_auth):
    assert save(client, auth, "identity", {"identity": field_modules(client, auth)["identity"]}).status_code == 200
    response = save(client, auth, "all", {})
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert errors["contact.contact_phone"] == ["Missing data for required field."]
    assert errors["agreement.client_agreement"] == ["Must be accepted."]
    assert "questionnaire.trading_experience" in errors
    assert "identity.first_name" not in errors
    assert kyc(client, auth)["kyc_status"] == "filling"
    audits = client.get("/api/v1/admin/audits?type=kyc", headers=admin_auth).get_json()
    assert audits["total"] == 0


def test_all_saves_every_module_sent_and_submits_in_one_request(client, auth):
    data = field_modules(client, auth)
    questionnaire_id, answers = questionnaire_answers(client, auth)
    data["questionnaire"] = [{**a, "questionnaire_id": questionnaire_id} for a in answers]
    response = save(client, auth, "all", data)
    assert response.status_code == 200, response.get_json()
    body = kyc(client, auth)
    assert body["kyc_status"] == "pending"
    assert len(body["kyc_data"]["questionnaire"]) == len(answers)
    assert [a["key"] for a in body["kyc_data"]["agreement"]] == [
        "client_agreement",
        "risk_disclosure",
        "privacy_policy",
    ]


def test_a_bad_module_in_all_saves_nothing(client, auth):
    data = field_modules(client, auth)
    data["identity"]["country"] = "XX"
    response = save(client, auth, "all", data)
    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == ["identity.country"]
    assert kyc(client, auth)["kyc_data"]["family"] == {}


# Bad input ------------------------------------------------------------------------------------

ADULT = "1990-05-17"


def minor_birthday():
    today = date.today()
    return (
        today.replace(year=today.year - 17).isoformat() if not (today.month == 2 and today.day == 29) else "2020-01-01"
    )


@pytest.mark.parametrize(
    "change, error_key, message",
    [
        ({"gender": "other"}, "identity.gender", "Must be one of: male, female."),
        ({"birthday": "17/05/1990"}, "identity.birthday", "Not a valid date (YYYY-MM-DD)."),
        ({"birthday": "1990-02-30"}, "identity.birthday", "Not a valid date (YYYY-MM-DD)."),
        (
            {"birthday": (date.today() + timedelta(days=3)).isoformat()},
            "identity.birthday",
            "Must not be in the future.",
        ),
        ({"birthday": minor_birthday()}, "identity.birthday", "You must be at least 18 years old."),
        ({"country": "XX"}, "identity.country", "Not a valid ISO 3166-1 alpha-2 country code."),
        ({"country": "GBR"}, "identity.country", "At most 2 characters."),
        ({"first_name": 42}, "identity.first_name", "Not a valid string."),
        ({"first_name": ""}, "identity.first_name", "Missing data for required field."),
        ({"nickname": "Ada"}, "identity.nickname", "Unknown field."),
    ],
)
def test_identity_field_errors_are_keyed_module_dot_field(client, auth, change, error_key, message):
    identity = {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "birthday": ADULT,
        "gender": "female",
        "country": "GB",
        **change,
    }
    response = save(client, auth, "identity", {"identity": identity})
    assert response.status_code == 422
    body = response.get_json()
    assert body["code"] == "validation_error"
    assert body["errors"] == {error_key: [message]}
    assert kyc(client, auth)["kyc_data"]["identity"] == {}


def test_missing_required_fields_are_each_named(client, auth):
    response = save(client, auth, "identity", {"identity": {"first_name": "Ada"}})
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == {
        "identity.last_name",
        "identity.birthday",
        "identity.gender",
        "identity.country",
    }


def test_phone_must_look_like_a_phone_number(client, auth):
    contact = {
        "contact_phone": "call me",
        "residence_province": "London",
        "residential_address": "x",
        "postal_code": "1",
    }
    response = save(client, auth, "contact", {"contact": contact})
    assert response.get_json()["errors"] == {"contact.contact_phone": ["Not a valid phone number."]}


def test_document_fields_take_only_the_callers_own_uploads(client, factory, auth):
    stranger = factory.headers(client, factory.user())
    theirs = upload(client, stranger)
    for url in (theirs, "https://evil.example/passport.png", "/api/v1/uploads/" + "0" * 32):
        response = save(
            client, auth, "authentication", {"authentication": {"identification_type": "passport", "passport": url}}
        )
        assert response.status_code == 422
        assert response.get_json()["errors"] == {"authentication.passport": ["Must be the URL of a file you uploaded."]}


def test_the_chosen_document_type_makes_its_scans_required(client, auth):
    response = save(
        client,
        auth,
        "authentication",
        {"authentication": {"identification_type": "identity_card", "identity_front": upload(client, auth)}},
    )
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"authentication.identity_back": ["Missing data for required field."]}


def test_unknown_or_disabled_modules_are_refused_and_other_modules_ignored(client, auth, admin_auth):
    response = save(client, auth, "nonsense", {"nonsense": {}})
    assert response.status_code == 422 and "current_module" in response.get_json()["errors"]

    response = save(client, auth, "all", {"nonsense": {"a": 1}})
    assert response.get_json()["errors"] == {"nonsense": ["Unknown module."]}

    # Other modules in a single-module save are ignored (not saved, not refused).
    response = save(client, auth, "job", {"job": {"industry_attributes": "it"}, "family": {"marital_status": "x"}})
    assert response.status_code == 200, response.get_json()
    assert kyc(client, auth)["kyc_data"]["family"] == {}

    response = save(client, auth, "job", {})
    assert response.get_json()["errors"] == {"job": ["Missing data for required field."]}

    # Only the vendor sets e_verify: saving it answers the state and changes nothing.
    response = save(client, auth, "e_verify", {"e_verify": {"status": "passed"}})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["e_verify"]["status"] == "not_started"
    assert kyc(client, auth)["kyc_data"]["e_verify"] == {}

    assert (
        client.put(
            "/api/v1/admin/kyc/form", headers=admin_auth, json={"module": "job", "is_enabled": False}
        ).status_code
        == 200
    )
    response = save(client, auth, "job", {"job": {"industry_attributes": "it"}})
    assert response.get_json()["errors"] == {"job": ["This module is not enabled."]}
    assert "job" not in [m["module"]["key"] for m in form(client, auth)["kyc"]["modules"]]


def test_unknown_body_fields_are_refused(client, auth):
    response = client.put(
        "/api/v1/client/kyc", headers=auth, json={"current_module": "job", "kyc_data": {}, "status": "approved"}
    )
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"status": ["Unknown field."]}


def test_agreements_must_be_accepted(client, auth):
    response = save(client, auth, "agreement", {"agreement": {"client_agreement": True, "risk_disclosure": False}})
    assert response.status_code == 422
    assert response.get_json()["errors"] == {
        "agreement.risk_disclosure": ["Must be accepted."],
        "agreement.privacy_policy": ["Must be accepted."],
    }
    response = save(client, auth, "agreement", {"agreement": {"client_agreement": "yes"}})
    assert response.get_json()["errors"]["agreement.client_agreement"] == ["Not a valid boolean."]


# Questionnaire (#18) ----------------------------------------------------------------------------


def test_questionnaire_answers_are_saved_in_the_seed_shape(client, auth):
    questionnaire_id, answers = questionnaire_answers(client, auth)
    response = client.put(
        "/api/v1/client/kyc/questionnaire",
        headers=auth,
        json={"questionnaire_id": questionnaire_id, "answers": answers},
    )
    assert response.status_code == 200 and response.get_json() == {}
    stored = kyc(client, auth)["kyc_data"]["questionnaire"]
    assert len(stored) == len(answers)
    first = stored[0]
    assert set(first) == {
        "answer",
        "component_type",
        "key",
        "question",
        "question_id",
        "questionnaire_id",
        "questionnaire_name",
    }
    assert first["key"] == "trading_experience" and first["answer"] == "gt_3y"
    assert "questionnaire" in kyc(client, auth)["completed_module"]


def test_questionnaire_answers_are_checked_against_the_questions(client, auth):
    questionnaire_id, answers = questionnaire_answers(client, auth)
    bad = [dict(a) for a in answers]
    bad[0]["answer"] = "forever"
    bad[1]["answer"] = ["forex", "gold"]
    del bad[2]
    bad.append({"question_id": 999999, "answer": "x"})
    response = client.put(
        "/api/v1/client/kyc/questionnaire", headers=auth, json={"questionnaire_id": questionnaire_id, "answers": bad}
    )
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert errors["questionnaire.trading_experience"] == ["Must be one of: none, lt_1y, 1_3y, gt_3y."]
    assert "questionnaire.products_traded" in errors
    assert errors["questionnaire.annual_income"] == ["Missing data for required field."]
    assert errors[f"questionnaire.answers.{len(bad) - 1}.question_id"] == ["Unknown question."]

    response = client.put(
        "/api/v1/client/kyc/questionnaire", headers=auth, json={"questionnaire_id": 999999, "answers": answers}
    )
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"questionnaire_id": ["Unknown questionnaire."]}
    assert kyc(client, auth)["kyc_data"]["questionnaire"] == []


# Roles and scope ----------------------------------------------------------------------------------


def test_kyc_routes_need_a_token_and_the_right_role(client, factory, kyc_form, admin_auth):
    client_auth = factory.headers(client, factory.user())
    for method, path in (
        ("get", "/api/v1/client/kyc"),
        ("put", "/api/v1/client/kyc"),
        ("get", "/api/v1/client/kyc/form"),
        ("put", "/api/v1/client/kyc/questionnaire"),
        ("post", "/api/v1/client/kyc/e-verify/sessions"),
        ("get", "/api/v1/ib/kyc"),
        ("get", "/api/v1/admin/kyc/form"),
        ("get", "/api/v1/admin/kyc/questionnaires"),
    ):
        assert getattr(client, method)(path, json={}).status_code == 401, path
    assert client.get("/api/v1/client/kyc", headers=admin_auth).status_code == 403
    assert client.get("/api/v1/client/kyc/form", headers=admin_auth).status_code == 403
    assert client.get("/api/v1/ib/kyc", headers=client_auth).status_code == 403
    assert client.get("/api/v1/admin/kyc/form", headers=client_auth).status_code == 403
    assert client.put("/api/v1/admin/kyc/form", headers=client_auth, json={"module": "job"}).status_code == 403
    assert client.post("/api/v1/admin/kyc/questionnaires", headers=client_auth, json={}).status_code == 403


def test_an_ib_sees_its_own_kyc_only(client, factory, auth):
    fill_everything(client, auth)
    ib_auth = factory.headers(client, factory.ib())
    body = kyc(client, ib_auth, "/api/v1/ib/kyc")
    assert body["kyc_data"]["identity"] == {} and body["completed_module"] == []
    assert list(body) == [
        "agreement_status",
        "apply_status",
        "completed_module",
        "identity_status",
        "kyc_approved_at",
        "kyc_data",
        "kyc_status",
        "kyc_way",
        "register_datetime",
    ]
    # An IB is also a client: it fills in its KYC through the client routes.
    assert save(client, ib_auth, "job", {"job": {"industry_attributes": "finance"}}).status_code == 200
    assert kyc(client, ib_auth, "/api/v1/ib/kyc")["kyc_data"]["job"] == {"industry_attributes": "finance"}


# At rest ----------------------------------------------------------------------------------------------


def test_document_links_are_encrypted_at_rest(client, app, auth, client_user):
    from crm_app.extensions import db

    url = upload(client, auth)
    save(client, auth, "authentication", {"authentication": {"identification_type": "passport", "passport": url}})
    with app.app_context():
        raw = db.session.execute(
            sa.text("SELECT data FROM kyc_profiles WHERE user_id = :u"), {"u": client_user.id}
        ).scalar_one()
    stored = raw["authentication"]["passport"]
    assert stored.startswith("fernet:v1:") and url.rsplit("/", 1)[1] not in stored
    assert raw["authentication"]["identification_type"] == "passport"
    assert kyc(client, auth)["kyc_data"]["authentication"]["passport"] == url


def test_other_domains_ask_kyc_is_approved_and_kyc_country(client, auth, client_user, ctx):
    from crm_app.kyc.services import kyc_country, kyc_is_approved

    assert kyc_is_approved(client_user.id) is False and kyc_country(client_user.id) is None
    save(client, auth, "identity", {"identity": field_modules(client, auth)["identity"]})
    assert kyc_country(client_user.id) == "GB" and kyc_is_approved(client_user.id) is False


# The broker's form editor -------------------------------------------------------------------------------


def test_admin_adds_a_required_field_and_clients_must_fill_it(client, auth, admin_auth):
    modules = client.get("/api/v1/admin/kyc/form", headers=admin_auth).get_json()
    job = next(m for m in modules["list"] if m["key"] == "job")
    assert job["group"] == "kyc" and modules["total"] == 9
    definitions = [{k: v for k, v in f.items() if k not in ("id", "value")} for f in job["fields"]]
    definitions.append(
        {
            "key": "years_employed",
            "name": "Years with this employer",
            "type": "select",
            "component_type": "select",
            "is_required": True,
            "options": [{"label": "Under 2", "value": "lt2"}, {"label": "2 or more", "value": "ge2"}],
        }
    )
    response = client.put("/api/v1/admin/kyc/form", headers=admin_auth, json={"module": "job", "fields": definitions})
    assert response.status_code == 200, response.get_json()
    updated = response.get_json()
    assert [f["key"] for f in updated["fields"]][-1] == "years_employed"
    assert [f["id"] for f in updated["fields"]][:4] == [f["id"] for f in job["fields"]]

    response = save(client, auth, "job", {"job": {"industry_attributes": "it"}})
    assert response.get_json()["errors"] == {"job.years_employed": ["Missing data for required field."]}
    assert save(client, auth, "job", {"job": {"industry_attributes": "it", "years_employed": "ge2"}}).status_code == 200

    fewer = [d for d in definitions if d["key"] in ("industry_attributes",)]
    response = client.put("/api/v1/admin/kyc/form", headers=admin_auth, json={"module": "job", "fields": fewer})
    assert [f["key"] for f in response.get_json()["fields"]] == ["industry_attributes"]


@pytest.mark.parametrize(
    "body, error_key",
    [
        (
            {"module": "job", "fields": [{"key": "a", "name": "A", "type": "select", "component_type": "select"}]},
            "fields.0.options",
        ),
        (
            {
                "module": "job",
                "fields": [
                    {"key": "a", "name": "A", "type": "string", "component_type": "input"},
                    {"key": "a", "name": "B", "type": "string", "component_type": "input"},
                ],
            },
            "fields.1.key",
        ),
        (
            {
                "module": "job",
                "fields": [
                    {
                        "key": "a",
                        "name": "A",
                        "type": "select",
                        "component_type": "select",
                        "options": [{"label": "X", "value": "x", "required_fields": ["nope"]}],
                    }
                ],
            },
            "fields.0.options.0.required_fields",
        ),
        (
            {
                "module": "questionnaire",
                "fields": [{"key": "a", "name": "A", "type": "string", "component_type": "input"}],
            },
            "fields",
        ),
        ({"module": "job", "fields": [{"key": "a", "name": "A", "type": "blob", "component_type": "input"}]}, "fields"),
        ({"module": "nope"}, "module"),
    ],
)
def test_bad_form_definitions_are_refused(client, kyc_form, admin_auth, body, error_key):
    response = client.put("/api/v1/admin/kyc/form", headers=admin_auth, json=body)
    assert response.status_code == 422
    assert error_key in response.get_json()["errors"]


def test_admin_manages_questionnaires(client, auth, admin_auth):
    listed = client.get("/api/v1/admin/kyc/questionnaires", headers=admin_auth).get_json()
    assert listed["total"] == 1 and len(listed["list"][0]["questions"]) == 6

    response = client.post(
        "/api/v1/admin/kyc/questionnaires",
        headers=admin_auth,
        json={
            "name": "Appropriateness",
            "questions": [
                {
                    "key": "margin_call",
                    "question": "What is a margin call?",
                    "component_type": "radio",
                    "options": [{"label": "A warning", "value": "warning"}, {"label": "A bonus", "value": "bonus"}],
                }
            ],
        },
    )
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["is_enabled"] is True
    question_id = created["questions"][0]["id"]

    # Both enabled questionnaires now appear in the form and both must be answered.
    names = {f["questionnaire_name"] for f in form(client, auth)["kyc"]["modules"][0]["fields"]}
    assert names == {"Trading experience and suitability", "Appropriateness"}

    response = client.put(
        f"/api/v1/admin/kyc/questionnaires/{created['id']}",
        headers=admin_auth,
        json={
            "is_enabled": False,
            "questions": [
                {**created["questions"][0], "question": "Define a margin call."} | {"id": None},
                {"key": "stop_out", "question": "What is a stop out?", "component_type": "textarea"},
            ],
        },
    )
    assert response.status_code == 422  # `id` is not for the client to send

    questions = [{k: v for k, v in q.items() if k != "id"} for q in created["questions"]]
    questions[0]["question"] = "Define a margin call."
    questions.append({"key": "stop_out", "question": "What is a stop out?", "component_type": "textarea"})
    response = client.put(
        f"/api/v1/admin/kyc/questionnaires/{created['id']}",
        headers=admin_auth,
        json={"is_enabled": False, "questions": questions},
    )
    assert response.status_code == 200, response.get_json()
    updated = response.get_json()
    assert updated["questions"][0]["id"] == question_id
    assert updated["questions"][0]["question"] == "Define a margin call."
    assert updated["is_enabled"] is False

    bad = client.post(
        "/api/v1/admin/kyc/questionnaires",
        headers=admin_auth,
        json={"name": "X", "questions": [{"key": "q", "question": "?", "component_type": "radio"}]},
    )
    assert bad.status_code == 422 and "questions.0.options" in bad.get_json()["errors"]
    missing = client.put("/api/v1/admin/kyc/questionnaires/999999", headers=admin_auth, json={"name": "X"})
    assert missing.status_code == 404


def test_demo_seed_is_idempotent(ctx, kyc_form):
    from crm_app.extensions import db
    from crm_app.kyc.demo import seed_kyc_demo
    from crm_app.kyc.models import KycFormField, KycQuestion

    count = db.session.scalar(sa.select(sa.func.count()).select_from(KycFormField))
    seed_kyc_demo()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(KycFormField)) == count
    assert db.session.scalar(sa.select(sa.func.count()).select_from(KycQuestion)) == 6
