"""KYC rules: the broker-configured form, saving and validating modules, submission to
the review queue, questionnaires and electronic identity verification.

Other domains ask only `kyc_is_approved(user_id)`, `kyc_country(user_id)` and
`kyc_legal_name(user_id)`.
"""

import logging
import re
import uuid
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from crm_app.admin.services import record_audit_log
from crm_app.broker.services import broker_zone
from crm_app.common.errors import Conflict, NotFound, ServiceUnavailable, Unauthorized, ValidationFailed
from crm_app.common.redirects import redirect_allowed
from crm_app.common.timeutil import from_unix, to_unix, utcnow
from crm_app.extensions import db
from crm_app.integrations import everify
from crm_app.kyc.countries import ISO_3166_ALPHA2
from crm_app.kyc.crypto import decrypt_text, encrypt_text
from crm_app.kyc.models import (
    MODULE_GROUPS,
    MODULES,
    EVerifySession,
    KycFormField,
    KycFormModule,
    KycProfile,
    KycQuestion,
    KycQuestionnaire,
)
from crm_app.review.services import ReviewHandler, open_review_item, register_review_handler

log = logging.getLogger(__name__)

FIELD_TYPES = ("string", "text", "email", "phone", "country", "date", "select", "multi_select", "file", "boolean")
COMPONENT_TYPES = (
    "input",
    "textarea",
    "select",
    "radio",
    "checkbox",
    "switch",
    "date_picker",
    "country_select",
    "phone_input",
    "upload",
)
QUESTION_COMPONENTS = ("radio", "select", "checkbox", "input", "textarea")
CHOICE_TYPES = ("select", "multi_select")
CHOICE_QUESTIONS = ("radio", "select", "checkbox")
# Modules whose content does not come from their own field list.
FIELDLESS_MODULES = ("questionnaire", "e_verify")
EDITABLE_STATUSES = ("filling", "rejected")
BIRTHDAY_KEYS = ("birthday", "date_of_birth")
ADULT_AGE = 18
KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE_PATTERN = re.compile(r"^\+?[0-9][0-9 ()\-]{4,28}$")
DATE_PATTERN = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
TEXT_LIMITS = {"text": 2000}
DEFAULT_TEXT_LIMIT = 255

REQUIRED = "Missing data for required field."
UNKNOWN = "Unknown field."
# The field keys #27 shows for each module. A front end built from the seed may send every
# one of them, blank where this broker's form does not ask for it: a blank one is ignored.
SEED_MODULE_FIELDS = {
    "identity": ("birthday", "country", "first_name", "full_name", "gender", "last_name"),
    "authentication": (
        "driver_license_back",
        "driver_license_front",
        "identification_type",
        "identity_back",
        "identity_front",
        "medical_insurance_card",
        "passport",
        "permanent_card_back",
        "permanent_card_front",
        "residence_permit_back",
        "residence_permit_front",
    ),
    "authentication_accessory": ("address_proof", "bank_statement", "selfie"),
    "contact": ("contact_phone", "mailing_address", "postal_code", "residence_province", "residential_address"),
    "family": (
        "emergency_contact_name",
        "emergency_contact_phone",
        "emergency_contact_relationship",
        "home_phone",
        "marital_status",
    ),
    "job": ("company_address", "company_name", "industry_attributes", "position"),
}


class FieldInvalid(Exception):
    pass


# Time on the wire -------------------------------------------------------------------


def wire_time(moment, zone):
    """`YYYY-MM-DD HH:MM:SS` in the broker's timezone (times are stored as naive UTC)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=ZoneInfo("UTC")).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


# The form ---------------------------------------------------------------------------


def load_form():
    """Every configured module by key, in display order."""
    modules = db.session.scalars(select(KycFormModule).order_by(KycFormModule.sort, KycFormModule.key)).all()
    return {module.key: module for module in modules}


def enabled_fields(module):
    return [field for field in module.fields if field.is_enabled]


def enabled_questionnaires():
    return db.session.scalars(
        select(KycQuestionnaire)
        .where(KycQuestionnaire.is_enabled.is_(True))
        .order_by(KycQuestionnaire.sort, KycQuestionnaire.id)
    ).all()


def module_enabled(form, key):
    module = form.get(key)
    return module is not None and module.is_enabled


# Profiles ---------------------------------------------------------------------------


def find_profile(user_id):
    return db.session.scalar(select(KycProfile).where(KycProfile.user_id == user_id))


def blank_profile(user_id):
    """What a user who never saved anything has (not stored: reads create no rows)."""
    return KycProfile(
        user_id=user_id, status="filling", apply_status="filling", data={}, completed_modules=[], kyc_way=""
    )


def lock_profile(user_id):
    """The user's profile, created if needed, locked until the transaction ends."""
    query = select(KycProfile).where(KycProfile.user_id == user_id).with_for_update(of=KycProfile)
    profile = db.session.scalar(query)
    if profile is None:
        try:
            with db.session.begin_nested():
                profile = blank_profile(user_id)
                db.session.add(profile)
        except IntegrityError:
            # Another request created it first: use theirs.
            profile = db.session.scalar(query)
    return profile


def ensure_editable(profile):
    if profile.status not in EDITABLE_STATUSES:
        raise Conflict(
            code="kyc_locked", errors={"kyc_status": [f"The KYC is {profile.status}; it can no longer be changed."]}
        )


def kyc_is_approved(user_id):
    """For other domains (live accounts, funding): has this user's KYC been approved?"""
    status = db.session.scalar(select(KycProfile.status).where(KycProfile.user_id == user_id))
    return status == "approved"


def kyc_legal_name(user_id):
    """The name on the user's KYC identity module (first and last name, else the full
    name), or "" when there is none. Once the KYC is approved it can no longer change."""
    data = db.session.scalar(select(KycProfile.data).where(KycProfile.user_id == user_id)) or {}
    identity = data.get("identity") or {}
    name = " ".join(part.strip() for part in (identity.get("first_name"), identity.get("last_name")) if part)
    return (name.strip() or (identity.get("full_name") or "").strip())[:200]


def kyc_country(user_id):
    """The ISO 3166-1 alpha-2 country the user declared in the identity module, or None."""
    data = db.session.scalar(select(KycProfile.data).where(KycProfile.user_id == user_id)) or {}
    return (data.get("identity") or {}).get("country") or None


# Field validation -------------------------------------------------------------------


def int_or_none(value):
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def is_blank(value):
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def option_values(options):
    return [str(option.get("value")) for option in options or []]


def parse_text(value, limit):
    if not isinstance(value, str):
        raise FieldInvalid("Not a valid string.")
    value = value.strip()
    if len(value) > limit:
        raise FieldInvalid(f"At most {limit} characters.")
    return value


def parse_date(field, value):
    text = parse_text(value, 10)
    try:
        if not DATE_PATTERN.match(text):
            raise ValueError(text)
        day = date.fromisoformat(text)
    except ValueError:
        raise FieldInvalid("Not a valid date (YYYY-MM-DD).") from None
    today = utcnow().date()
    if "expir" in field.key:
        if day <= today:
            raise FieldInvalid("Must be a date in the future.")
        return text
    if day > today:
        raise FieldInvalid("Must not be in the future.")
    if field.key in BIRTHDAY_KEYS:
        if day.year < 1900:
            raise FieldInvalid("Not a plausible date of birth.")
        age = today.year - day.year - ((today.month, today.day) < (day.month, day.day))
        if age < ADULT_AGE:
            raise FieldInvalid(f"You must be at least {ADULT_AGE} years old.")
    return text


def parse_field_value(field, value, user_id):
    """The stored form of one field's value, or FieldInvalid."""
    kind = field.type
    allowed = option_values(field.options)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise FieldInvalid("Not a valid boolean.")
        return value
    if kind == "multi_select":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise FieldInvalid("Must be a list of option values.")
        if len(set(value)) != len(value):
            raise FieldInvalid("An option was chosen twice.")
        if any(v not in allowed for v in value):
            raise FieldInvalid(f"Must be among: {', '.join(allowed)}.")
        return value
    if kind == "file":
        from crm_app.uploads.services import find_owned_upload_by_url, upload_url

        upload = find_owned_upload_by_url(parse_text(value, 1024), user_id)
        if upload is None:
            raise FieldInvalid("Must be the URL of a file you uploaded.")
        return upload_url(upload)
    if kind == "date":
        return parse_date(field, value)
    if kind == "country":
        code = parse_text(value, 2).upper()
        if code not in ISO_3166_ALPHA2:
            raise FieldInvalid("Not a valid ISO 3166-1 alpha-2 country code.")
        return code
    text = parse_text(value, TEXT_LIMITS.get(kind, DEFAULT_TEXT_LIMIT))
    if kind == "email" and not EMAIL_PATTERN.match(text):
        raise FieldInvalid("Not a valid email address.")
    if kind == "phone":
        digits = sum(ch.isdigit() for ch in text)
        if not PHONE_PATTERN.match(text) or not 6 <= digits <= 15:
            raise FieldInvalid("Not a valid phone number.")
    if (kind == "select" or allowed) and text not in allowed:
        raise FieldInvalid(f"Must be one of: {', '.join(allowed)}.")
    return text


def required_keys(fields, values):
    """Required fields, plus those the chosen options require (a passport needs its scan)."""
    keys = [field.key for field in fields if field.is_required]
    for field in fields:
        chosen = values.get(field.key)
        chosen = chosen if isinstance(chosen, list) else [chosen]
        for option in field.options or []:
            if option.get("value") in chosen:
                keys.extend(option.get("required_fields") or [])
    return list(dict.fromkeys(keys))


def missing_field_errors(module_key, fields, values):
    by_key = {field.key for field in fields}
    return {
        f"{module_key}.{key}": [REQUIRED]
        for key in required_keys(fields, values)
        if key in by_key and is_blank(values.get(key))
    }


def ignorable_extra_field(module_key, name, value, stored):
    """A key the form does not ask for that is still no error: one of the seed's own field
    keys sent blank, or a value #27 showed (a field the broker has since switched off) sent
    back unchanged. Neither is stored."""
    if is_blank(value) and name in SEED_MODULE_FIELDS.get(module_key, ()):
        return True
    return name in stored and stored[name] == value


def squashed_name(*parts):
    return "".join("".join(part.split()) for part in parts).casefold()


def check_full_name(full_name, clean):
    """#27 shows `identity.full_name` (first and last name joined); sent back it is ignored
    when it agrees with them, in either order, spaces and case aside. Without a first or
    last name it is the name given. Answers (value to store or None, error or None)."""
    if is_blank(full_name):
        return None, None
    try:
        text = parse_text(full_name, DEFAULT_TEXT_LIMIT)
    except FieldInvalid as exc:
        return None, str(exc)
    first, last = clean.get("first_name") or "", clean.get("last_name") or ""
    if not (first or last):
        return text, None
    if squashed_name(text) in (squashed_name(first, last), squashed_name(last, first)):
        return None, None
    return None, "Does not match the first and last name."


def validate_field_module(module, raw, user_id, stored=None):
    fields = enabled_fields(module)
    if not isinstance(raw, dict):
        return None, {module.key: ["Must be an object of field values."]}
    by_key = {field.key: field for field in fields}
    stored = stored or {}
    derived_full_name = module.key == "identity" and "full_name" not in by_key
    clean, errors = {}, {}
    for name, value in raw.items():
        field = by_key.get(name)
        path = f"{module.key}.{name}"
        if field is None:
            if not (derived_full_name and name == "full_name") and not ignorable_extra_field(
                module.key, name, value, stored
            ):
                errors[path] = [UNKNOWN]
        elif not is_blank(value):
            try:
                clean[name] = parse_field_value(field, value, user_id)
            except FieldInvalid as exc:
                errors[path] = [str(exc)]
    for path, messages in missing_field_errors(module.key, fields, clean).items():
        errors.setdefault(path, messages)
    if derived_full_name:
        full_name, error = check_full_name(raw.get("full_name"), clean)
        if error:
            errors["identity.full_name"] = [error]
        if clean.get("first_name") or clean.get("last_name"):
            clean["full_name"] = " ".join(part for part in (clean.get("first_name"), clean.get("last_name")) if part)
        elif full_name:
            clean["full_name"] = full_name
    for field in fields:
        if field.type == "file" and clean.get(field.key):
            clean[field.key] = encrypt_text(clean[field.key])
    return clean, errors


def validate_agreement(module, raw):
    """Accepted agreements, stored as #27 shows them: [{key, name, url}]."""
    fields = {field.key: field for field in enabled_fields(module)}
    errors, accepted = {}, []
    if isinstance(raw, list):
        # #27's own shape sent back: every listed agreement is accepted.
        items = [(item.get("key") if isinstance(item, dict) else None, True) for item in raw]
    elif isinstance(raw, dict):
        items = list(raw.items())
    else:
        return None, {"agreement": ["Must be an object of agreement keys and true/false."]}
    for key, value in items:
        if not isinstance(key, str):
            errors["agreement"] = ["Each agreement needs its key."]
            continue
        path = f"agreement.{key}"
        if key not in fields:
            errors[path] = [UNKNOWN]
        elif not isinstance(value, bool):
            errors[path] = ["Not a valid boolean."]
        elif value and key not in accepted:
            accepted.append(key)
    for key, field in fields.items():
        if field.is_required and key not in accepted:
            errors.setdefault(f"agreement.{key}", ["Must be accepted."])
    return [{"key": key, "name": fields[key].name, "url": fields[key].url} for key in accepted], errors


def validate_answer_value(question, value):
    allowed = option_values(question.options)
    if question.component_type == "checkbox":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise FieldInvalid("Must be a list of option values.")
        if len(set(value)) != len(value) or any(v not in allowed for v in value):
            raise FieldInvalid(f"Must be among: {', '.join(allowed)}.")
        return value
    text = parse_text(value, 2000)
    if (question.component_type in CHOICE_QUESTIONS or allowed) and text not in allowed:
        raise FieldInvalid(f"Must be one of: {', '.join(allowed)}.")
    return text


def validate_answers(questionnaire, answers):
    """Answers to one questionnaire, stored in the seed's answer shape."""
    questions = {question.id: question for question in questionnaire.questions}
    errors, clean = {}, {}
    for index, answer in enumerate(answers):
        question = questions.get(int_or_none(answer.get("question_id")))
        other_questionnaire = answer.get("questionnaire_id") not in (None, questionnaire.id)
        if question is None or other_questionnaire:
            errors[f"questionnaire.answers.{index}.question_id"] = ["Unknown question."]
            continue
        path = f"questionnaire.{question.key}"
        if question.id in clean:
            errors[path] = ["Answered twice."]
        elif not is_blank(answer.get("answer")):
            try:
                clean[question.id] = validate_answer_value(question, answer.get("answer"))
            except FieldInvalid as exc:
                errors[path] = [str(exc)]
    for question in questionnaire.questions:
        if question.is_required and question.id not in clean:
            errors.setdefault(f"questionnaire.{question.key}", [REQUIRED])
    stored = [
        {
            "answer": clean[question.id],
            "component_type": question.component_type,
            "key": question.key,
            "question": question.question,
            "question_id": question.id,
            "questionnaire_id": questionnaire.id,
            "questionnaire_name": questionnaire.name,
        }
        for question in questionnaire.questions
        if question.id in clean
    ]
    return stored, errors


def missing_answer_errors(stored_answers):
    """Required questions of every enabled questionnaire that have no answer."""
    answered = {answer.get("question_id") for answer in stored_answers or []}
    return {
        f"questionnaire.{question.key}": [REQUIRED]
        for questionnaire in enabled_questionnaires()
        for question in questionnaire.questions
        if question.is_required and question.id not in answered
    }


def answers_by_question_key(raw):
    """The questionnaire as #28 lists it, `{field_key: value}`, as a list of answers: each
    key is the key of a question of an enabled questionnaire."""
    by_key = {}
    for questionnaire in enabled_questionnaires():
        for question in questionnaire.questions:
            by_key.setdefault(question.key, []).append((questionnaire.id, question.id))
    answers, errors = [], {}
    for key, value in raw.items():
        matches = by_key.get(key) or []
        if not matches:
            errors[f"questionnaire.{key}"] = [UNKNOWN]
        elif len(matches) > 1:
            errors[f"questionnaire.{key}"] = [
                "Several questionnaires ask a question with this key: send a list of answers with question_id."
            ]
        else:
            questionnaire_id, question_id = matches[0]
            answers.append({"questionnaire_id": questionnaire_id, "question_id": question_id, "answer": value})
    return answers, errors


def validate_questionnaire_module(raw):
    """The whole questionnaire module: `{question_key: answer}` (#28's fields, like any
    module) or a list of answers (#27's shape sent back)."""
    errors = {}
    if isinstance(raw, dict):
        raw, errors = answers_by_question_key(raw)
    elif not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        return None, {"questionnaire": ["Must be an object of answers by question key, or a list of answers."]}
    questionnaires = {q.id: q for q in enabled_questionnaires()}
    by_questionnaire = {}
    for index, answer in enumerate(raw):
        if int_or_none(answer.get("questionnaire_id")) not in questionnaires:
            errors[f"questionnaire.answers.{index}.questionnaire_id"] = ["Unknown questionnaire."]
        else:
            by_questionnaire.setdefault(answer["questionnaire_id"], []).append(answer)
    stored = []
    for questionnaire_id, answers in by_questionnaire.items():
        answers_stored, answer_errors = validate_answers(questionnaires[questionnaire_id], answers)
        stored.extend(answers_stored)
        errors.update(answer_errors)
    for path, messages in missing_answer_errors(stored).items():
        errors.setdefault(path, messages)
    return stored, errors


def validate_module(module, raw, user_id, stored=None):
    if module.key == "questionnaire":
        return validate_questionnaire_module(raw)
    if module.key == "agreement":
        return validate_agreement(module, raw)
    return validate_field_module(module, raw, user_id, stored)


# Completeness -----------------------------------------------------------------------


def module_missing(module, data):
    """Why `module` is not complete in `data` ({} when it is)."""
    stored = data.get(module.key)
    if module.key == "e_verify":
        # With no vendor configured nobody could pass it: the KYC is reviewed by hand instead.
        if module.is_required and everify_vendor() is not None and (stored or {}).get("status") != "passed":
            return {"e_verify": ["Electronic identity verification must pass first."]}
        return {}
    if module.key == "questionnaire":
        return missing_answer_errors(stored)
    if module.key == "agreement":
        accepted = {item.get("key") for item in stored or []}
        return {
            f"agreement.{field.key}": ["Must be accepted."]
            for field in enabled_fields(module)
            if field.is_required and field.key not in accepted
        }
    return missing_field_errors(module.key, enabled_fields(module), stored or {})


def completed_modules(form, data):
    """Enabled modules the user saved that need nothing more, in the seed's module order."""
    done = []
    for key in MODULES:
        module = form.get(key)
        if module is None or not module.is_enabled:
            continue
        saved = key in data and (key != "e_verify" or (data[key] or {}).get("status") == "passed")
        if saved and not module_missing(module, data):
            done.append(key)
    return done


def submission_errors(form, data):
    enabled = [module for module in form.values() if module.is_enabled]
    if not any(module.key not in FIELDLESS_MODULES for module in enabled):
        raise ValidationFailed(code="kyc_form_not_configured", errors={"current_module": ["No KYC form is set up."]})
    errors = {}
    for module in enabled:
        errors.update(module_missing(module, data))
    return errors


# Saving (#30, #18) --------------------------------------------------------------------


def is_blank_module(value):
    return value is None or value in ({}, [])


def modules_to_save(form, current_module, kyc_data):
    """Which modules of `kyc_data` a #30 save reads (and errors about the choice).

    A single-module save reads only `kyc_data[current_module]`; the other modules in the
    same body are ignored, not saved. A front end built from the seed sends its whole
    form's state from every tab: another tab's half-typed data must neither fail this
    tab's save nor be stored unchecked, and `all` is the way to save several modules.
    With `all`, a module sent blank (`{}`, `[]`, null) keeps what is stored, a module
    this broker has switched off is ignored, and `e_verify` is the vendor's to set: #27's
    data sent back as a whole is accepted. A key that is no module at all is refused.
    """
    if current_module != "all":
        if current_module not in kyc_data:
            return [], {current_module: [REQUIRED]}
        return [current_module], {}
    keys, errors = [], {}
    for key, value in kyc_data.items():
        if key not in MODULES:
            errors[key] = ["Unknown module."]
        elif key != "e_verify" and module_enabled(form, key) and not is_blank_module(value):
            keys.append(key)
    return keys, errors


def stored_module_values(profile, key):
    """A field module's stored values as #27 shows them (document links readable)."""
    value = (profile.data or {}).get(key)
    return {name: decrypt_text(v) for name, v in value.items()} if isinstance(value, dict) else {}


def save_kyc_module(user, current_module, kyc_data, client=None):
    """#30: save a module (or `all`) and answer `{}`. `current_module: e_verify` saves
    nothing (only the verification vendor sets it, whatever the body holds) and answers
    the caller's e-verify state, as #28 shows it."""
    if current_module == "e_verify":
        profile = find_profile(user.id) or blank_profile(user.id)
        return {"e_verify": everify_summary(user.id, profile, load_form())}
    save_kyc(user, current_module, kyc_data, client)
    return {}


def save_kyc(user, current_module, kyc_data, client=None):
    """Save one module (or `all`); `all` with nothing missing submits the KYC for review.
    Which modules of the body are read: see `modules_to_save`."""
    form = load_form()
    profile = lock_profile(user.id)
    ensure_editable(profile)

    keys, errors = modules_to_save(form, current_module, kyc_data)
    cleaned = {}
    for key in keys:
        if key not in MODULES:
            errors[key] = ["Unknown module."]
        elif key == "e_verify":
            errors[key] = ["Set by the verification provider; it cannot be saved."]
        elif not module_enabled(form, key):
            errors[key] = ["This module is not enabled."]
        else:
            stored = stored_module_values(profile, key)
            value, module_errors = validate_module(form[key], kyc_data[key], user.id, stored)
            errors.update(module_errors)
            cleaned[key] = value
    if errors:
        raise ValidationFailed(errors=errors)

    data = {**(profile.data or {}), **cleaned}
    profile.data = data
    profile.completed_modules = completed_modules(form, data)
    submitted = current_module == "all"
    if submitted:
        missing = submission_errors(form, data)
        if missing:
            raise ValidationFailed(code="kyc_incomplete", errors=missing)
        submit(profile, user)
    elif profile.status == "rejected":
        profile.status = "filling"
    record_audit_log(
        "kyc.submit" if submitted else "kyc.save",
        actor=user,
        client=client,
        target_type="kyc_profile",
        target_id=profile.id,
        details={"modules": sorted(cleaned)},
    )
    db.session.commit()
    return profile


def submit(profile, user):
    everify_passed = (profile.data.get("e_verify") or {}).get("status") == "passed"
    profile.status = "pending"
    profile.apply_status = "pending"
    profile.kyc_way = "e_verify" if everify_passed else "manual"
    profile.submitted_at = utcnow()
    db.session.flush()
    item = open_review_item(
        "kyc",
        user.id,
        profile.id,
        f"KYC-{profile.id}",
        details={"completed_module": list(profile.completed_modules), "kyc_way": profile.kyc_way},
    )
    db.session.flush()
    profile.review_item_id = item.id


def save_questionnaire(user, questionnaire_id, answers, client=None):
    """#18: answers to one questionnaire; other questionnaires' answers stay."""
    form = load_form()
    if not module_enabled(form, "questionnaire"):
        raise ValidationFailed(errors={"questionnaire_id": ["The questionnaire is not part of this KYC."]})
    questionnaire = db.session.get(KycQuestionnaire, questionnaire_id)
    if questionnaire is None or not questionnaire.is_enabled:
        raise ValidationFailed(errors={"questionnaire_id": ["Unknown questionnaire."]})
    profile = lock_profile(user.id)
    ensure_editable(profile)
    stored, errors = validate_answers(questionnaire, answers)
    if errors:
        raise ValidationFailed(errors=errors)
    others = [
        a for a in (profile.data or {}).get("questionnaire") or [] if a.get("questionnaire_id") != questionnaire.id
    ]
    data = {**(profile.data or {}), "questionnaire": others + stored}
    profile.data = data
    profile.completed_modules = completed_modules(form, data)
    if profile.status == "rejected":
        profile.status = "filling"
    record_audit_log(
        "kyc.questionnaire",
        actor=user,
        client=client,
        target_type="kyc_profile",
        target_id=profile.id,
        details={"questionnaire_id": questionnaire.id},
    )
    db.session.commit()
    return profile


# Views (#27, #28, #50) ------------------------------------------------------------------


def readable_data(data, zone):
    """Stored module data as the API shows it: links decrypted, times on the wire."""
    result = {}
    for key in MODULES:
        value = (data or {}).get(key)
        if key in ("questionnaire", "agreement"):
            result[key] = list(value or [])
        elif key == "e_verify":
            value = dict(value or {})
            if value.get("verified_at") is not None:
                value["verified_at"] = wire_time(from_unix(value["verified_at"]), zone)
            result[key] = value
        else:
            result[key] = {name: decrypt_text(v) for name, v in (value or {}).items()}
    return result


def group_status(profile, form, group):
    if profile.status != "filling":
        return profile.status
    keys = [key for key in MODULE_GROUPS[group] if module_enabled(form, key)]
    done = set(profile.completed_modules or [])
    return "completed" if keys and all(key in done for key in keys) else "filling"


def kyc_view(user):
    """#27 / #50: the caller's KYC status and data."""
    form = load_form()
    profile = find_profile(user.id) or blank_profile(user.id)
    zone = broker_zone()
    return {
        "agreement_status": group_status(profile, form, "agreement"),
        "apply_status": profile.apply_status,
        "completed_module": list(profile.completed_modules or []),
        "identity_status": group_status(profile, form, "identity"),
        "kyc_approved_at": wire_time(profile.approved_at, zone),
        "kyc_data": readable_data(profile.data, zone),
        "kyc_status": profile.status,
        "kyc_way": profile.kyc_way or "",
        "register_datetime": wire_time(user.created_at, zone),
    }


def field_view(field, value):
    return {
        "component_type": field.component_type,
        "description": field.description,
        "is_enabled": field.is_enabled,
        "is_required": field.is_required,
        "key": field.key,
        "name": field.name,
        "options": field.options or [],
        "sort": field.sort,
        "type": field.type,
        "url": field.url,
        "value": value,
    }


def question_fields(answers):
    by_question = {answer.get("question_id"): answer.get("answer") for answer in answers or []}
    fields = []
    for questionnaire in enabled_questionnaires():
        for question in questionnaire.questions:
            fields.append(
                {
                    "component_type": question.component_type,
                    "description": questionnaire.description,
                    "is_enabled": True,
                    "is_required": question.is_required,
                    "key": question.key,
                    "name": question.question,
                    "options": question.options or [],
                    "sort": question.sort,
                    "type": "multi_select" if question.component_type == "checkbox" else "string",
                    "value": by_question.get(question.id),
                    "question_id": question.id,
                    "questionnaire_id": questionnaire.id,
                    "questionnaire_name": questionnaire.name,
                }
            )
    return fields


def module_fields_view(module, data):
    if module.key == "questionnaire":
        return question_fields(data.get("questionnaire"))
    if module.key == "agreement":
        accepted = {item.get("key") for item in data.get("agreement") or []}
        return [field_view(field, field.key in accepted) for field in enabled_fields(module)]
    values = data.get(module.key) or {}
    return [field_view(field, values.get(field.key)) for field in enabled_fields(module)]


def kyc_form_view(user):
    """#28: the form, module by module, with the caller's values and statuses."""
    form = load_form()
    profile = find_profile(user.id) or blank_profile(user.id)
    data = readable_data(profile.data, broker_zone())
    view = {}
    for group, keys in MODULE_GROUPS.items():
        modules = [module for module in form.values() if module.key in keys and module.is_enabled]
        view[group] = {
            "modules": [
                {"fields": module_fields_view(module, data), "module": {"key": module.key, "name": module.name}}
                for module in modules
            ],
            "status": group_status(profile, form, group),
        }
    return {
        "agreement": view["agreement"],
        "apply_status": profile.apply_status,
        "e_verify": everify_summary(user.id, profile, form),
        "identity": view["identity"],
        "kyc": view["kyc"],
        "remark": profile.remark,
    }


# Review queue -----------------------------------------------------------------------------


def _pending_profile(item):
    profile = db.session.get(KycProfile, item.object_id, with_for_update=True)
    if profile is None:
        raise NotFound()
    if profile.status != "pending":
        raise Conflict(code="kyc_not_pending", errors={"kyc_status": [f"The KYC is {profile.status}."]})
    return profile


def approve_kyc(item, actor):
    profile = _pending_profile(item)
    profile.status = "approved"
    profile.apply_status = "approved"
    profile.approved_at = utcnow()
    # The verified name becomes the user's name everywhere else.
    identity = (profile.data or {}).get("identity") or {}
    if identity.get("first_name") or identity.get("last_name"):
        profile.user.first_name = (identity.get("first_name") or "")[:100]
        profile.user.last_name = (identity.get("last_name") or "")[:100]


def reject_kyc(item, actor):
    profile = _pending_profile(item)
    profile.status = "rejected"
    profile.apply_status = "rejected"
    profile.approved_at = None


def describe_kyc(item):
    profile = db.session.get(KycProfile, item.object_id)
    if profile is None:
        return {}
    zone = broker_zone()
    return {
        "id": profile.id,
        "user_id": profile.user_id,
        "kyc_status": profile.status,
        "apply_status": profile.apply_status,
        "kyc_way": profile.kyc_way,
        "submitted_at": wire_time(profile.submitted_at, zone),
        "kyc_approved_at": wire_time(profile.approved_at, zone),
        "completed_module": list(profile.completed_modules or []),
        "kyc_data": readable_data(profile.data, zone),
    }


register_review_handler("kyc", ReviewHandler(approve=approve_kyc, reject=reject_kyc, describe=describe_kyc))


# Form configuration (admin) ---------------------------------------------------------------


def admin_form():
    """Every module, disabled ones and disabled fields included."""
    form = load_form()
    return [admin_module_view(module) for module in form.values()]


def admin_module_view(module):
    group = next((name for name, keys in MODULE_GROUPS.items() if module.key in keys), "")
    return {
        "key": module.key,
        "name": module.name,
        "group": group,
        "sort": module.sort,
        "is_enabled": module.is_enabled,
        "is_required": module.is_required,
        "description": module.description,
        "fields": [field_view(field, None) | {"id": field.id} for field in module.fields],
    }


def check_options(options, path, errors, sibling_keys=None):
    values = [str(option["value"]) for option in options]
    if len(set(values)) != len(values):
        errors[f"{path}.options"] = ["Option values must be unique."]
    if sibling_keys is None:
        return
    for index, option in enumerate(options):
        unknown = [key for key in option.get("required_fields") or [] if key not in sibling_keys]
        if unknown:
            errors[f"{path}.options.{index}.required_fields"] = [f"Unknown fields: {', '.join(unknown)}."]


def check_field_definitions(module_key, fields):
    errors = {}
    keys = [field["key"] for field in fields]
    if module_key in FIELDLESS_MODULES and fields:
        errors["fields"] = [f"The {module_key} module has no fields of its own."]
    for index, field in enumerate(fields):
        path = f"fields.{index}"
        if keys.count(field["key"]) > 1:
            errors[f"{path}.key"] = ["Keys must be unique within a module."]
        if field["type"] in CHOICE_TYPES and not field.get("options"):
            errors[f"{path}.options"] = ["A choice needs at least one option."]
        if module_key == "agreement" and field["type"] != "boolean":
            errors[f"{path}.type"] = ["Agreement items are booleans (accepted or not)."]
        check_options(field.get("options") or [], path, errors, sibling_keys=set(keys))
    if errors:
        raise ValidationFailed(errors=errors)


def update_form_module(values, actor=None, client=None):
    """Change a module's settings and, when `fields` is sent, replace its field list."""
    key = values["module"]
    module = db.session.get(KycFormModule, key, with_for_update=True)
    if module is None:
        module = KycFormModule(key=key, name=values.get("name") or key.replace("_", " ").title(), sort=0)
        db.session.add(module)
    for attr in ("name", "sort", "is_enabled", "is_required", "description"):
        if attr in values:
            setattr(module, attr, values[attr])
    if "fields" in values:
        check_field_definitions(key, values["fields"])
        existing = {field.key: field for field in module.fields}
        replaced = []
        for order, definition in enumerate(values["fields"]):
            field = existing.get(definition["key"]) or KycFormField(module_key=key, key=definition["key"])
            for attr in ("name", "type", "component_type", "is_required", "is_enabled", "options"):
                setattr(field, attr, definition[attr])
            field.sort = definition.get("sort", order * 10)
            field.description = definition.get("description", "")
            field.url = definition.get("url", "")
            replaced.append(field)
        # Kept keys are updated in place, so (module, key) stays unique at every step.
        module.fields = replaced
    record_audit_log(
        "kyc.form.update",
        actor=actor,
        client=client,
        target_type="kyc_form_module",
        target_id=key,
        details={"fields": [f["key"] for f in values.get("fields", [])] if "fields" in values else None},
    )
    db.session.commit()
    return admin_module_view(module)


def list_questionnaires():
    return db.session.scalars(select(KycQuestionnaire).order_by(KycQuestionnaire.sort, KycQuestionnaire.id)).all()


def get_questionnaire(questionnaire_id):
    questionnaire = db.session.get(KycQuestionnaire, questionnaire_id)
    if questionnaire is None:
        raise NotFound()
    return questionnaire


def check_questions(questions):
    errors = {}
    keys = [question["key"] for question in questions]
    for index, question in enumerate(questions):
        path = f"questions.{index}"
        if keys.count(question["key"]) > 1:
            errors[f"{path}.key"] = ["Keys must be unique within a questionnaire."]
        if question["component_type"] in CHOICE_QUESTIONS and not question.get("options"):
            errors[f"{path}.options"] = ["A choice needs at least one option."]
        check_options(question.get("options") or [], path, errors)
    if errors:
        raise ValidationFailed(errors=errors)


def apply_questionnaire(questionnaire, values):
    for attr in ("name", "description", "is_enabled", "sort"):
        if attr in values:
            setattr(questionnaire, attr, values[attr])
    if "questions" in values:
        check_questions(values["questions"])
        existing = {question.key: question for question in questionnaire.questions}
        replaced = []
        for order, definition in enumerate(values["questions"]):
            question = existing.get(definition["key"]) or KycQuestion(key=definition["key"])
            question.question = definition["question"]
            question.component_type = definition["component_type"]
            question.is_required = definition.get("is_required", True)
            question.options = [
                {"label": o["label"], "value": str(o["value"])} for o in definition.get("options") or []
            ]
            question.sort = definition.get("sort", order * 10)
            replaced.append(question)
        questionnaire.questions = replaced


def create_questionnaire(values, actor=None, client=None):
    questionnaire = KycQuestionnaire(name=values["name"], questions=[])
    apply_questionnaire(questionnaire, values)
    db.session.add(questionnaire)
    db.session.flush()
    record_audit_log(
        "kyc.questionnaire.create",
        actor=actor,
        client=client,
        target_type="kyc_questionnaire",
        target_id=questionnaire.id,
    )
    db.session.commit()
    return questionnaire


def update_questionnaire(questionnaire_id, values, actor=None, client=None):
    questionnaire = db.session.get(KycQuestionnaire, questionnaire_id, with_for_update=True)
    if questionnaire is None:
        raise NotFound()
    apply_questionnaire(questionnaire, values)
    record_audit_log(
        "kyc.questionnaire.update",
        actor=actor,
        client=client,
        target_type="kyc_questionnaire",
        target_id=questionnaire.id,
    )
    db.session.commit()
    return questionnaire


# Electronic verification (#17 and the vendor's callback) -------------------------------------


def everify_settings():
    return everify.EVerifySettings.from_config(current_app.config)


def everify_vendor():
    """The configured vendor, or None when electronic verification is off here."""
    settings = everify_settings()
    return everify.vendor_for(settings.provider, settings)


def check_redirect_targets(**urls):
    """422 `redirect_not_allowed` naming each URL that is neither one of FRONTEND_ORIGINS nor a path here."""
    errors = {
        name: ["Must be a path on this site or a URL on one of the broker's front-end origins."]
        for name, url in urls.items()
        if not redirect_allowed(url, current_app.config)
    }
    if errors:
        raise ValidationFailed(code="redirect_not_allowed", errors=errors)


def everify_summary(user_id, profile, form):
    settings = everify_settings()
    attempts = db.session.scalar(select(func.count()).where(EVerifySession.user_id == user_id))
    latest = db.session.scalar(
        select(EVerifySession)
        .where(EVerifySession.user_id == user_id)
        .order_by(EVerifySession.created_at.desc(), EVerifySession.attempt.desc())
        .limit(1)
    )
    status = ((profile.data or {}).get("e_verify") or {}).get("status")
    if status != "passed":
        if latest is None:
            status = "not_started"
        elif latest.status == "pending" and latest.expire_at <= utcnow():
            status = "expired"
        else:
            status = latest.status
    module = form.get("e_verify")
    offered = everify.vendor_for(settings.provider, settings) is not None
    if not offered and status != "passed":
        status = "off"
    return {
        "attempt_times": attempts,
        "code": (latest.result_code if latest else None) or "",
        "provider": (latest.provider if latest else settings.provider) or "",
        "retry_times": max(0, settings.max_attempts - attempts) if offered else 0,
        "status": status,
        "is_enabled": bool(offered and module and module.is_enabled),
        "is_required": bool(offered and module and module.is_enabled and module.is_required),
    }


def start_everify_session(user, success_url, failed_url, client=None):
    settings = everify_settings()
    if not module_enabled(load_form(), "e_verify"):
        raise Conflict(code="e_verify_disabled", errors={"e_verify": ["Electronic verification is not offered."]})
    vendor = everify.vendor_for(settings.provider, settings)
    if vendor is None:
        raise ServiceUnavailable(
            code="e_verify_unavailable", errors={"e_verify": ["Electronic verification is off on this server."]}
        )
    check_redirect_targets(success_url=success_url, failed_url=failed_url)
    profile = lock_profile(user.id)
    ensure_editable(profile)
    if ((profile.data or {}).get("e_verify") or {}).get("status") == "passed":
        raise Conflict(code="e_verify_already_passed", errors={"e_verify": ["Already verified."]})
    attempts = db.session.scalar(select(func.count()).where(EVerifySession.user_id == user.id))
    if attempts >= settings.max_attempts:
        raise Conflict(code="e_verify_attempts_exhausted", errors={"e_verify": ["No verification attempts left."]})

    now = utcnow()
    session_id = uuid.uuid4().hex
    expire_at = now + timedelta(seconds=settings.session_ttl_seconds)
    started = vendor.create_session(session_id, success_url, failed_url, expire_at)
    session = EVerifySession(
        id=session_id,
        provider=vendor.name,
        user_id=user.id,
        status="pending",
        attempt=attempts + 1,
        success_url=success_url,
        failed_url=failed_url,
        redirect_url=started.redirect_url,
        vendor_ref=started.vendor_ref,
        created_at=now,
        expire_at=expire_at,
    )
    db.session.add(session)
    record_audit_log(
        "kyc.e_verify.start",
        actor=user,
        client=client,
        target_type="everify_session",
        target_id=session_id,
        details={"provider": vendor.name, "attempt": session.attempt},
    )
    db.session.commit()
    return {
        "expire_at": wire_time(expire_at, broker_zone()),
        "redirect_url": session.redirect_url,
        "session_id": session_id,
    }


def receive_everify_callback(provider, raw_body, headers):
    """The vendor's webhook: trusted only with a good signature (401 otherwise, nothing changes)."""
    vendor = everify.vendor_for(provider, everify_settings())
    if vendor is None:
        raise NotFound()
    try:
        vendor.verify_webhook_signature(raw_body, headers)
    except everify.InvalidSignature as exc:
        log.warning("e-verify callback from %s refused: %s", provider, exc)
        raise Unauthorized(code="invalid_signature") from None
    try:
        result = vendor.parse_result(raw_body)
    except everify.MalformedCallback as exc:
        raise ValidationFailed(
            code="invalid_callback", errors={"_schema": [f"Not a verification result: {exc}"]}
        ) from None
    return apply_everify_result(provider, result)


def apply_everify_result(provider, result):
    session = db.session.get(EVerifySession, result.session_id, with_for_update=True)
    if session is None or session.provider != provider:
        raise NotFound()
    if session.status == result.status:
        # The vendor delivered the same result again: nothing more to do.
        return session
    if session.status != "pending":
        raise Conflict(code="e_verify_session_closed", errors={"session_id": [f"This session is {session.status}."]})
    if session.expire_at <= utcnow():
        session.status = "expired"
        db.session.commit()
        raise Conflict(code="e_verify_session_expired", errors={"session_id": ["This session has expired."]})

    profile = lock_profile(session.user_id)
    session.status = result.status
    session.result_code = result.code
    session.result_message = result.message
    session.verified_at = result.verified_at
    data = {
        **(profile.data or {}),
        "e_verify": {
            "provider": provider,
            "reason_code": result.code,
            "reason_msg": result.message,
            "session_id": session.id,
            "status": result.status,
            "verified_at": to_unix(result.verified_at),
        },
    }
    profile.data = data
    profile.completed_modules = completed_modules(load_form(), data)
    record_audit_log(
        "kyc.e_verify.result",
        target_type="everify_session",
        target_id=session.id,
        details={"provider": provider, "status": result.status, "code": result.code, "user_id": session.user_id},
    )
    db.session.commit()
    return session


def sim_vendor():
    """The simulator vendor; not found where it may not exist (outside development and test)."""
    vendor = everify.vendor_for(everify.SimulatorVendor.name, everify_settings())
    if vendor is None:
        raise NotFound()
    return vendor


def get_sim_session(session_id):
    sim_vendor()
    session = db.session.get(EVerifySession, session_id)
    if session is None or session.provider != everify.SimulatorVendor.name:
        raise NotFound()
    return session


def decide_sim_session(session_id, passed):
    """The simulator's page was answered: deliver its signed callback, as the vendor would.

    The delivery goes through the same check as the webhook route (signature included);
    answers the URL to send the person back to.
    """
    session = get_sim_session(session_id)
    # A session stored before the redirect rule (or since the origins changed) sends nobody elsewhere.
    target_field = "success_url" if passed else "failed_url"
    target = getattr(session, target_field)
    check_redirect_targets(**{target_field: target})
    vendor = sim_vendor()
    body, headers = vendor.callback(session.id, passed)
    receive_everify_callback(vendor.name, body, headers)
    return target
