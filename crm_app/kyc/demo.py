"""The demo broker's KYC form and questionnaire, loaded idempotently.

Modules and fields that already exist are left as the broker edited them; only
missing ones are added.
"""

from sqlalchemy import select

from crm_app.extensions import db
from crm_app.kyc.models import KycFormField, KycFormModule, KycQuestion, KycQuestionnaire


def opts(*pairs):
    return [{"label": label, "value": value} for value, label in pairs]


def field(key, name, type="string", component_type="input", required=True, options=None, description="", url=""):
    return {
        "key": key,
        "name": name,
        "type": type,
        "component_type": component_type,
        "is_required": required,
        "options": options or [],
        "description": description,
        "url": url,
    }


def upload(key, name, description=""):
    return field(key, name, "file", "upload", required=False, description=description)


ID_TYPES = [
    ("passport", "Passport", ["passport"]),
    ("identity_card", "National identity card", ["identity_front", "identity_back"]),
    ("driver_license", "Driving licence", ["driver_license_front", "driver_license_back"]),
    ("residence_permit", "Residence permit", ["residence_permit_front", "residence_permit_back"]),
    ("permanent_card", "Permanent resident card", ["permanent_card_front", "permanent_card_back"]),
    ("medical_insurance_card", "Medical insurance card", ["medical_insurance_card"]),
]

# (key, name, sort, enabled, module-level required, fields)
FORM = [
    (
        "identity",
        "Personal details",
        10,
        True,
        False,
        [
            field("first_name", "First name"),
            field("last_name", "Last name"),
            field("birthday", "Date of birth", "date", "date_picker", description="YYYY-MM-DD; 18 or older"),
            field("gender", "Gender", "select", "radio", options=opts(("male", "Male"), ("female", "Female"))),
            field("country", "Country of citizenship", "country", "country_select", description="ISO 3166-1 alpha-2"),
        ],
    ),
    ("questionnaire", "Trading experience", 20, True, False, []),
    (
        "family",
        "Family",
        30,
        True,
        False,
        [
            field(
                "marital_status",
                "Marital status",
                "select",
                "select",
                options=opts(
                    ("single", "Single"), ("married", "Married"), ("divorced", "Divorced"), ("widowed", "Widowed")
                ),
            ),
            field("home_phone", "Home phone", "phone", "phone_input", required=False),
            field("emergency_contact_name", "Emergency contact"),
            field(
                "emergency_contact_relationship",
                "Relationship",
                "select",
                "select",
                options=opts(
                    ("spouse", "Spouse"),
                    ("parent", "Parent"),
                    ("child", "Child"),
                    ("sibling", "Sibling"),
                    ("friend", "Friend"),
                    ("other", "Other"),
                ),
            ),
            field("emergency_contact_phone", "Emergency contact phone", "phone", "phone_input"),
        ],
    ),
    (
        "contact",
        "Contact details",
        40,
        True,
        False,
        [
            field("contact_phone", "Mobile phone", "phone", "phone_input"),
            field("residence_province", "Province / state"),
            field("residential_address", "Residential address", "text", "textarea"),
            field("mailing_address", "Mailing address (if different)", "text", "textarea", required=False),
            field("postal_code", "Postal code"),
        ],
    ),
    (
        "job",
        "Employment",
        50,
        True,
        False,
        [
            field(
                "industry_attributes",
                "Industry",
                "select",
                "select",
                options=opts(
                    ("finance", "Banking and finance"),
                    ("it", "Information technology"),
                    ("manufacturing", "Manufacturing"),
                    ("healthcare", "Healthcare"),
                    ("education", "Education"),
                    ("government", "Public sector"),
                    ("self_employed", "Self-employed"),
                    ("retired", "Retired"),
                    ("student", "Student"),
                    ("other", "Other"),
                ),
            ),
            field("company_name", "Employer", required=False),
            field("position", "Position", required=False),
            field("company_address", "Employer's address", "text", "textarea", required=False),
        ],
    ),
    (
        "authentication_accessory",
        "Supporting documents",
        60,
        True,
        False,
        [
            field(
                "address_proof",
                "Proof of address",
                "file",
                "upload",
                description="A utility bill or bank letter from the last 3 months",
            ),
            upload("bank_statement", "Bank statement"),
            upload("selfie", "Selfie holding your ID"),
        ],
    ),
    (
        "authentication",
        "Identity document",
        70,
        True,
        False,
        [
            field(
                "identification_type",
                "Document type",
                "select",
                "select",
                options=[
                    {"label": label, "value": value, "required_fields": required} for value, label, required in ID_TYPES
                ],
                description="The scans this document needs become required",
            ),
            upload("passport", "Passport photo page"),
            upload("identity_front", "Identity card (front)"),
            upload("identity_back", "Identity card (back)"),
            upload("driver_license_front", "Driving licence (front)"),
            upload("driver_license_back", "Driving licence (back)"),
            upload("residence_permit_front", "Residence permit (front)"),
            upload("residence_permit_back", "Residence permit (back)"),
            upload("permanent_card_front", "Permanent resident card (front)"),
            upload("permanent_card_back", "Permanent resident card (back)"),
            upload("medical_insurance_card", "Medical insurance card"),
        ],
    ),
    (
        "agreement",
        "Agreements",
        80,
        True,
        False,
        [
            field(
                "client_agreement", "Client Agreement", "boolean", "checkbox", url="/static/demo/client-agreement.pdf"
            ),
            field("risk_disclosure", "Risk Disclosure", "boolean", "checkbox", url="/static/demo/risk-disclosure.pdf"),
            field("privacy_policy", "Privacy Policy", "boolean", "checkbox", url="/static/demo/privacy-policy.pdf"),
            field(
                "marketing_consent",
                "Send me market news and offers",
                "boolean",
                "checkbox",
                required=False,
                url="/static/demo/marketing.pdf",
            ),
        ],
    ),
    # Offered through the built-in simulator vendor; documents remain the other way.
    ("e_verify", "Electronic identity verification", 90, True, False, []),
]

QUESTIONNAIRE = {
    "name": "Trading experience and suitability",
    "description": "Required by our regulator before you trade leveraged products.",
    "questions": [
        (
            "trading_experience",
            "How long have you traded forex or CFDs?",
            "radio",
            opts(
                ("none", "Never"),
                ("lt_1y", "Less than a year"),
                ("1_3y", "1 to 3 years"),
                ("gt_3y", "More than 3 years"),
            ),
        ),
        (
            "products_traded",
            "Which products have you traded?",
            "checkbox",
            opts(
                ("forex", "Forex"),
                ("cfd", "CFDs"),
                ("stocks", "Stocks"),
                ("futures", "Futures"),
                ("options", "Options"),
                ("crypto", "Crypto"),
                ("none", "None"),
            ),
        ),
        (
            "annual_income",
            "Annual income (USD)",
            "select",
            opts(
                ("lt_25k", "Under 25,000"),
                ("25k_100k", "25,000 to 100,000"),
                ("100k_250k", "100,000 to 250,000"),
                ("gt_250k", "Over 250,000"),
            ),
        ),
        (
            "source_of_funds",
            "Source of the money you will trade with",
            "select",
            opts(
                ("salary", "Salary"),
                ("savings", "Savings"),
                ("business", "Business income"),
                ("inheritance", "Inheritance"),
                ("investments", "Investments"),
            ),
        ),
        (
            "leverage_understanding",
            "With 1:100 leverage, a 1% move against you loses what share of your margin?",
            "radio",
            opts(("1", "1%"), ("10", "10%"), ("100", "All of it")),
        ),
        ("trading_goal", "What do you want to achieve by trading?", "textarea", []),
    ],
}


def seed_form():
    existing = {module.key: module for module in db.session.scalars(select(KycFormModule))}
    for key, name, sort, enabled, required, fields in FORM:
        module = existing.get(key)
        if module is None:
            module = KycFormModule(key=key, name=name, sort=sort, is_enabled=enabled, is_required=required)
            db.session.add(module)
            db.session.flush()
        have = {f.key for f in module.fields}
        for order, definition in enumerate(fields):
            if definition["key"] not in have:
                module.fields.append(KycFormField(module_key=key, sort=order * 10, is_enabled=True, **definition))


def seed_questionnaire():
    questionnaire = db.session.scalar(select(KycQuestionnaire).where(KycQuestionnaire.name == QUESTIONNAIRE["name"]))
    if questionnaire is not None:
        return
    questionnaire = KycQuestionnaire(
        name=QUESTIONNAIRE["name"], description=QUESTIONNAIRE["description"], is_enabled=True, sort=0
    )
    for order, (key, text, component, options) in enumerate(QUESTIONNAIRE["questions"]):
        questionnaire.questions.append(
            KycQuestion(
                key=key,
                question=text,
                component_type=component,
                is_required=component != "textarea",
                options=options,
                sort=order * 10,
            )
        )
    db.session.add(questionnaire)


def seed_kyc_demo():
    seed_form()
    seed_questionnaire()
    db.session.commit()
