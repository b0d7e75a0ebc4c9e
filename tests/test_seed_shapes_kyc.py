"""#30 `PUT /client/kyc` accepts what the seed shows: `kyc_data` is `{module_key: {field_key:
value}}` for every module the #28 form lists, the questionnaire included; #27's data is
accepted back as it was read (its `identity.full_name` too); other modules sent with a
single-module save are ignored, never a 422; `current_module: e_verify` answers the e-verify
state. Bodies are built from the seed's own example blocks (#27, #28, #30)."""

import io
import json
import re
from pathlib import Path

import pytest

from tests.support.kyc_form import demo_kyc_modules

SEED = Path(__file__).resolve().parents[2] / "shared" / "seed" / "crm-saas-api.txt"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def seed_text():
    if not SEED.exists():
        pytest.skip("the seed file is not next to this checkout")
    return SEED.read_text(encoding="utf-8")


def seed_example(marker):
    """The seed's example object that starts with `marker` (its Redoc text as JSON)."""
    text = seed_text()
    start = text.index(marker)
    depth = 0
    for end in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[end], 0)
        if depth == 0:
            break
    return json.loads(re.sub(r"(^|[{\[,]|\n)\s*- ", r"\1", text[start : end + 1]))


def seed_kyc_data():
    """#27's `kyc_data` example: every module and field key the seed shows."""
    return seed_example('{- "agreement_status"')["kyc_data"]


def seed_current_modules():
    """#30's `current_module` enum."""
    line = next(line for line in seed_text().splitlines() if line.startswith("| current_module required"))
    return re.findall(r'"([a-z_]+)"', line)


@pytest.fixture
def kyc_form(factory):
    from crm_app.kyc.demo import seed_kyc_demo

    seed_kyc_demo()


@pytest.fixture
def auth(client, factory, kyc_form):
    return factory.headers(client, factory.user(first_name="", last_name=""))


def upload(client, headers):
    response = client.post(
        "/api/v1/uploads",
        headers=headers,
        data={"file": (io.BytesIO(PNG), "scan.png")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["url"]


def put(client, headers, current_module, kyc_data):
    return client.put(
        "/api/v1/client/kyc", headers=headers, json={"current_module": current_module, "kyc_data": kyc_data}
    )


def get_kyc(client, headers):
    response = client.get("/api/v1/client/kyc", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def get_form(client, headers):
    response = client.get("/api/v1/client/kyc/form", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def form_modules(form):
    return {m["module"]["key"]: m for group in ("identity", "kyc", "agreement") for m in form[group]["modules"]}


def questionnaire_by_field_key(form):
    """The questionnaire as a front end built from #28 sends it: `{field_key: value}`."""
    values = {}
    for field in form_modules(form)["questionnaire"]["fields"]:
        if field["component_type"] == "checkbox":
            values[field["key"]] = [field["options"][0]["value"]]
        elif field["options"]:
            values[field["key"]] = field["options"][-1]["value"]
        else:
            values[field["key"]] = "Grow my savings."
    return values


def every_module(client, headers):
    data = demo_kyc_modules(lambda: upload(client, headers))
    data["questionnaire"] = questionnaire_by_field_key(get_form(client, headers))
    return data


# The seed's shapes ------------------------------------------------------------------------------


def test_the_seed_blocks_name_the_modules_this_test_fills():
    """The test bodies below use the seed's module and field keys, not the code's."""
    seed = seed_kyc_data()
    assert set(seed_current_modules()) == {*seed, "all"}
    ours = demo_kyc_modules(lambda: "/x")
    for module, values in ours.items():
        if module != "agreement":
            assert set(values) <= set(seed[module]), module


def test_the_questionnaire_is_saved_by_field_key_like_any_module(client, auth):
    """The issue's own body: `{"questionnaire": {"trading_experience": "1_3y", ...}}`."""
    answers = {**questionnaire_by_field_key(get_form(client, auth)), "trading_experience": "1_3y"}
    response = put(client, auth, "questionnaire", {"questionnaire": answers})
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {}

    body = get_kyc(client, auth)
    stored = {a["key"]: a["answer"] for a in body["kyc_data"]["questionnaire"]}
    assert stored == answers
    assert "questionnaire" in body["completed_module"]
    shown = {f["key"]: f["value"] for f in form_modules(get_form(client, auth))["questionnaire"]["fields"]}
    assert shown == answers


def test_the_questionnaire_answer_list_is_still_accepted(client, auth):
    form = get_form(client, auth)
    answers = [
        {"questionnaire_id": f["questionnaire_id"], "question_id": f["question_id"], "answer": value}
        for f, value in zip(
            form_modules(form)["questionnaire"]["fields"], questionnaire_by_field_key(form).values(), strict=True
        )
    ]
    response = put(client, auth, "questionnaire", {"questionnaire": answers})
    assert response.status_code == 200, response.get_json()
    assert len(get_kyc(client, auth)["kyc_data"]["questionnaire"]) == len(answers)


def test_questionnaire_field_keys_are_checked_like_fields(client, auth):
    answers = {**questionnaire_by_field_key(get_form(client, auth)), "trading_experience": "forever"}
    del answers["annual_income"]
    answers["favourite_colour"] = "blue"
    response = put(client, auth, "questionnaire", {"questionnaire": answers})
    assert response.status_code == 422
    assert response.get_json()["errors"] == {
        "questionnaire.trading_experience": ["Must be one of: none, lt_1y, 1_3y, gt_3y."],
        "questionnaire.annual_income": ["Missing data for required field."],
        "questionnaire.favourite_colour": ["Unknown field."],
    }
    assert get_kyc(client, auth)["kyc_data"]["questionnaire"] == []


def test_all_with_every_module_field_keyed_submits(client, auth):
    response = put(client, auth, "all", every_module(client, auth))
    assert response.status_code == 200, response.get_json()
    body = get_kyc(client, auth)
    assert body["kyc_status"] == "pending"
    assert {a["key"] for a in body["kyc_data"]["questionnaire"]} >= {"trading_experience", "annual_income"}


def test_the_seed_30_example_shape_with_several_modules_saves_the_current_one(client, auth):
    """The seed's #30 example sends two modules (`property1`, `property2`) with
    `current_module: identity`: the others are ignored, whatever they hold."""
    data = every_module(client, auth)
    data["family"] = {"marital_status": "complicated"}  # half-typed on another tab
    data["property2"] = {"property1": None, "property2": None}  # the seed's placeholder
    response = put(client, auth, "identity", data)
    assert response.status_code == 200, response.get_json()
    body = get_kyc(client, auth)
    assert body["kyc_data"]["identity"]["first_name"] == "Ada"
    assert body["kyc_data"]["family"] == {} and body["kyc_data"]["questionnaire"] == []
    assert body["completed_module"] == ["identity"]


# identity.full_name ---------------------------------------------------------------------------


@pytest.mark.parametrize("full_name", ["Ada Lovelace", "ada  LOVELACE", "Lovelace Ada", "", None])
def test_full_name_that_agrees_with_first_and_last_name_is_accepted(client, auth, full_name):
    identity = {**demo_kyc_modules(lambda: "/x")["identity"], "full_name": full_name}
    response = put(client, auth, "identity", {"identity": identity})
    assert response.status_code == 200, response.get_json()
    assert get_kyc(client, auth)["kyc_data"]["identity"]["full_name"] == "Ada Lovelace"


def test_full_name_that_contradicts_first_and_last_name_is_a_422_naming_it(client, auth):
    identity = {**demo_kyc_modules(lambda: "/x")["identity"], "full_name": "Charles Babbage"}
    response = put(client, auth, "identity", {"identity": identity})
    assert response.status_code == 422
    body = response.get_json()
    assert body["code"] == "validation_error"
    assert body["errors"] == {"identity.full_name": ["Does not match the first and last name."]}
    assert get_kyc(client, auth)["kyc_data"]["identity"] == {}


def test_seed_field_keys_sent_blank_are_not_unknown_fields(client, auth):
    """A front end built from #27 sends every seed key; those this broker's form does not
    ask for (`job.position` is asked, `identity.full_name` is derived) may come blank."""
    seed_identity = {key: "" for key in seed_kyc_data()["identity"]}
    identity = {**seed_identity, **demo_kyc_modules(lambda: "/x")["identity"]}
    assert put(client, auth, "identity", {"identity": identity}).status_code == 200


# e_verify ------------------------------------------------------------------------------------


def test_current_module_e_verify_answers_the_e_verify_state(client, auth):
    response = put(client, auth, "e_verify", {"e_verify": {"status": "passed", "provider": "sim"}})
    assert response.status_code == 200, response.get_json()
    state = response.get_json()["e_verify"]
    seed_state = seed_example('{- "agreement": {\n- "modules"')["e_verify"]
    assert set(seed_state) <= set(state)
    assert state == get_form(client, auth)["e_verify"]
    assert state["status"] == "not_started"
    assert get_kyc(client, auth)["kyc_data"]["e_verify"] == {}


# Round trips ---------------------------------------------------------------------------------


def fill_everything(client, headers):
    for module, values in every_module(client, headers).items():
        response = put(client, headers, module, {module: values})
        assert response.status_code == 200, (module, response.get_json())


def test_what_27_returned_is_accepted_back_for_every_module_and_all(client, auth):
    fill_everything(client, auth)
    read = get_kyc(client, auth)["kyc_data"]
    assert read["identity"]["full_name"] == "Ada Lovelace"
    for module in seed_current_modules():
        response = put(client, auth, module, read)
        assert response.status_code == 200, (module, response.get_json())
        if module != "all":
            assert get_kyc(client, auth)["kyc_data"] == read, module
    assert get_kyc(client, auth)["kyc_status"] == "pending"


def test_what_28_shows_is_accepted_back_as_field_keyed_modules(client, auth):
    fill_everything(client, auth)
    before = get_kyc(client, auth)["kyc_data"]
    kyc_data = {
        key: {field["key"]: field["value"] for field in module["fields"]}
        for key, module in form_modules(get_form(client, auth)).items()
    }
    for module in kyc_data:
        response = put(client, auth, module, kyc_data)
        assert response.status_code == 200, (module, response.get_json())
    assert get_kyc(client, auth)["kyc_data"] == before
    response = put(client, auth, "all", kyc_data)
    assert response.status_code == 200, response.get_json()
    assert get_kyc(client, auth)["kyc_status"] == "pending"


def test_an_empty_27_sent_back_with_all_says_what_is_missing(client, auth):
    """A new user's #27 data (every module empty) sent back with `all` is not refused for
    its shape: the answer lists what the KYC still needs."""
    response = put(client, auth, "all", get_kyc(client, auth)["kyc_data"])
    assert response.status_code == 422
    body = response.get_json()
    assert body["code"] == "kyc_incomplete"
    assert "identity.first_name" in body["errors"] and "questionnaire.trading_experience" in body["errors"]


def test_a_module_the_broker_switched_off_is_ignored_in_all(client, auth, factory):
    from crm_app.kyc.services import update_form_module

    fill_everything(client, auth)
    read = get_kyc(client, auth)["kyc_data"]
    update_form_module({"module": "job", "is_enabled": False})
    response = put(client, auth, "all", read)
    assert response.status_code == 200, response.get_json()
