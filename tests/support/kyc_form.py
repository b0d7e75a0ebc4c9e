"""A complete, correct KYC for the demo broker's form (`crm_app.kyc.demo`), for tests that
take a client through the real KYC flow over HTTP."""


def demo_kyc_modules(upload, first_name="Ada", last_name="Lovelace"):
    """Every field module of the demo form filled in; `upload()` returns a fresh upload URL."""
    return {
        "identity": {
            "first_name": first_name,
            "last_name": last_name,
            "birthday": "1990-05-17",
            "gender": "female",
            "country": "gb",
        },
        "family": {
            "marital_status": "single",
            "emergency_contact_name": "Charles Babbage",
            "emergency_contact_relationship": "friend",
            "emergency_contact_phone": "+44 20 7946 0000",
        },
        "contact": {
            "contact_phone": "+44 7700 900123",
            "residence_province": "London",
            "residential_address": "12 St James's Square",
            "postal_code": "SW1Y 4JH",
        },
        "job": {"industry_attributes": "it", "company_name": "Analytical Engines Ltd"},
        "authentication_accessory": {"address_proof": upload()},
        "authentication": {"identification_type": "passport", "passport": upload()},
        "agreement": {"client_agreement": True, "risk_disclosure": True, "privacy_policy": True},
    }


def questionnaire_answers(form):
    """(questionnaire_id, answers): an answer to every question of #28's questionnaire module."""
    module = next(m for m in form["kyc"]["modules"] if m["module"]["key"] == "questionnaire")
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
