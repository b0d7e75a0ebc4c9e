from marshmallow import fields, validate

from crm_app.common.schemas import ANY_FORM_VALUE, DB_INTEGER, EmptySchema, Schema  # noqa: F401  (EmptySchema: the seed's `{}`)
from crm_app.kyc import services
from crm_app.kyc.models import KYC_STATUSES, MODULES

STATUS_DESCRIPTION = (
    "`filling`, `completed` (every module of the group filled, not yet submitted), `pending`, `approved` or `rejected`"
)
REDIRECT_TARGET_DESCRIPTION = (
    "A path on this site (`/kyc/done`) or a URL on one of the broker's front-end origins (`FRONTEND_ORIGINS`); "
    "anything else is a 422 `redirect_not_allowed`"
)


# #27 / #50 -------------------------------------------------------------------------------


class AgreementItemSchema(Schema):
    key = fields.String()
    name = fields.String()
    url = fields.String()


class AnswerSchema(Schema):
    """One questionnaire answer in the seed's shape; only `question_id` and `answer` are read."""

    answer = fields.Raw(
        allow_none=True, metadata={**ANY_FORM_VALUE, "description": "An option value, a list of them, or text"}
    )
    component_type = fields.String()
    key = fields.String()
    question = fields.String()
    question_id = fields.Integer(required=True)
    questionnaire_id = fields.Integer()
    questionnaire_name = fields.String()


class EVerifyDataSchema(Schema):
    provider = fields.String()
    reason_code = fields.String()
    reason_msg = fields.String()
    session_id = fields.String()
    status = fields.String(metadata={"description": "`passed` or `rejected`"})
    verified_at = fields.String()


def module_dict(description):
    return fields.Dict(
        keys=fields.String(),
        values=fields.Raw(metadata={**ANY_FORM_VALUE, "nullable": True}),
        metadata={"description": description},
    )


class KycDataSchema(Schema):
    agreement = fields.List(fields.Nested(AgreementItemSchema))
    authentication = module_dict("identification_type and the matching document URLs")
    authentication_accessory = module_dict("address_proof, bank_statement, selfie URLs")
    contact = module_dict("contact_phone, mailing_address, postal_code, residence_province, residential_address")
    e_verify = fields.Nested(EVerifyDataSchema)
    family = module_dict("emergency contact, home phone, marital status")
    identity = module_dict("birthday, country (ISO 3166-1 alpha-2), first_name, full_name, gender, last_name")
    job = module_dict("company_address, company_name, industry_attributes, position")
    questionnaire = fields.List(fields.Nested(AnswerSchema))


class KycSchema(Schema):
    agreement_status = fields.String(metadata={"description": STATUS_DESCRIPTION})
    apply_status = fields.String(
        metadata={"description": "The latest submission: `filling` (none yet), `pending`, `approved`, `rejected`"}
    )
    completed_module = fields.List(fields.String())
    identity_status = fields.String(metadata={"description": STATUS_DESCRIPTION})
    kyc_approved_at = fields.String(allow_none=True)
    kyc_data = fields.Nested(KycDataSchema)
    kyc_status = fields.String(validate=validate.OneOf(KYC_STATUSES))
    kyc_way = fields.String(metadata={"description": "`manual` or `e_verify`, set on submission"})
    register_datetime = fields.String()


# #28 --------------------------------------------------------------------------------------


class OptionSchema(Schema):
    label = fields.String(required=True, validate=validate.Length(min=1, max=128))
    value = fields.String(required=True, validate=validate.Length(min=1, max=128))


class FieldOptionSchema(OptionSchema):
    required_fields = fields.List(
        fields.String(validate=validate.Length(max=64)),
        metadata={"description": "Fields of the same module this choice makes required"},
    )


class FormFieldSchema(Schema):
    component_type = fields.String()
    description = fields.String()
    is_enabled = fields.Boolean()
    is_required = fields.Boolean()
    key = fields.String()
    name = fields.String()
    options = fields.List(fields.Nested(FieldOptionSchema))
    sort = fields.Integer(validate=DB_INTEGER)
    type = fields.String()
    url = fields.String(metadata={"description": "The document this field refers to (agreements)"})
    value = fields.Raw(allow_none=True, metadata={**ANY_FORM_VALUE, "description": "The caller's saved value"})
    question_id = fields.Integer(metadata={"description": "Questionnaire module only"})
    questionnaire_id = fields.Integer(metadata={"description": "Questionnaire module only"})
    questionnaire_name = fields.String(metadata={"description": "Questionnaire module only"})


class ModuleRefSchema(Schema):
    key = fields.String()
    name = fields.String()


class FormModuleSchema(Schema):
    # `fields` is also the name of a Schema attribute: declare it under another name.
    module_fields = fields.List(fields.Nested(FormFieldSchema), data_key="fields", attribute="fields")
    module = fields.Nested(ModuleRefSchema)


class FormGroupSchema(Schema):
    modules = fields.List(fields.Nested(FormModuleSchema))
    status = fields.String(metadata={"description": STATUS_DESCRIPTION})


class EVerifySummarySchema(Schema):
    attempt_times = fields.Integer()
    code = fields.String(metadata={"description": "The latest result code"})
    provider = fields.String()
    retry_times = fields.Integer(metadata={"description": "Attempts left"})
    status = fields.String(
        metadata={
            "description": "`not_started`, `pending`, `passed`, `rejected`, `expired`, or `off` when this server "
            "offers no electronic verification"
        }
    )
    is_enabled = fields.Boolean(metadata={"description": "Offered: the broker's form has it and a vendor is set up"})
    is_required = fields.Boolean(metadata={"description": "A passed verification is needed to submit"})


class KycFormSchema(Schema):
    agreement = fields.Nested(FormGroupSchema)
    apply_status = fields.String()
    e_verify = fields.Nested(EVerifySummarySchema)
    identity = fields.Nested(FormGroupSchema)
    kyc = fields.Nested(FormGroupSchema)
    remark = fields.String(metadata={"description": "The reviewer's remark on the latest submission"})


# #30, #18, #17 -------------------------------------------------------------------------------


class SaveKycSchema(Schema):
    current_module = fields.String(required=True, validate=validate.OneOf((*MODULES, "all")))
    kyc_data = fields.Dict(
        keys=fields.String(validate=validate.Length(max=64)),
        # Documented as the seed shows it, a module of `{field_key: value}`; the list forms
        # the description names are accepted as well.
        values=fields.Raw(metadata={"type": "object", "additionalProperties": {**ANY_FORM_VALUE, "nullable": True}}),
        required=True,
        metadata={
            "description": "`{module_key: {field_key: value}}`, field keys as #28 lists them; `questionnaire` "
            "also takes a list of answers, `agreement` `{key: true}` or #27's list; `e_verify` is the provider's "
            "to set. A single-module save reads only the current module's data and ignores the others"
        },
    )


class SaveKycAnswerSchema(Schema):
    e_verify = fields.Nested(
        EVerifySummarySchema,
        metadata={"description": "Only for `current_module: e_verify`: the caller's e-verify state, as in #28"},
    )


class SaveQuestionnaireSchema(Schema):
    questionnaire_id = fields.Integer(required=True)
    answers = fields.List(fields.Nested(AnswerSchema), required=True, validate=validate.Length(max=500))


class EVerifySessionRequestSchema(Schema):
    success_url = fields.String(
        required=True, validate=validate.Length(min=1, max=1024), metadata={"description": REDIRECT_TARGET_DESCRIPTION}
    )
    failed_url = fields.String(
        required=True, validate=validate.Length(min=1, max=1024), metadata={"description": REDIRECT_TARGET_DESCRIPTION}
    )


class EVerifySessionSchema(Schema):
    expire_at = fields.String()
    redirect_url = fields.String()
    session_id = fields.String()


class SimDecisionSchema(Schema):
    outcome = fields.String(required=True, validate=validate.OneOf(("pass", "fail")))


class WebhookAnswerSchema(Schema):
    session_id = fields.String()
    status = fields.String()


# Admin ----------------------------------------------------------------------------------------

KEY = validate.Regexp(services.KEY_PATTERN, error="Lower-case letters, digits and _; a letter first.")


class AdminFieldSchema(Schema):
    id = fields.Integer(dump_only=True)
    key = fields.String(required=True, validate=KEY)
    name = fields.String(required=True, validate=validate.Length(min=1, max=128))
    type = fields.String(required=True, validate=validate.OneOf(services.FIELD_TYPES))
    component_type = fields.String(required=True, validate=validate.OneOf(services.COMPONENT_TYPES))
    is_required = fields.Boolean(load_default=False)
    is_enabled = fields.Boolean(load_default=True)
    options = fields.List(fields.Nested(FieldOptionSchema), load_default=list, validate=validate.Length(max=200))
    sort = fields.Integer(validate=DB_INTEGER)
    description = fields.String(validate=validate.Length(max=500))
    url = fields.String(validate=validate.Length(max=1024))
    value = fields.Raw(dump_only=True, metadata={**ANY_FORM_VALUE, "nullable": True})


class AdminModuleSchema(Schema):
    key = fields.String()
    name = fields.String()
    group = fields.String(metadata={"description": "Where #28 shows it: identity, kyc or agreement"})
    sort = fields.Integer(validate=DB_INTEGER)
    is_enabled = fields.Boolean()
    is_required = fields.Boolean(metadata={"description": "e_verify only: a passed verification is needed"})
    description = fields.String()
    module_fields = fields.List(fields.Nested(AdminFieldSchema), data_key="fields", attribute="fields")


class AdminFormSchema(Schema):
    list = fields.List(fields.Nested(AdminModuleSchema))
    total = fields.Integer()


class AdminModuleUpdateSchema(Schema):
    module = fields.String(required=True, validate=validate.OneOf(MODULES))
    name = fields.String(validate=validate.Length(min=1, max=128))
    sort = fields.Integer(validate=DB_INTEGER)
    is_enabled = fields.Boolean()
    is_required = fields.Boolean()
    description = fields.String(validate=validate.Length(max=500))
    module_fields = fields.List(
        fields.Nested(AdminFieldSchema),
        data_key="fields",
        attribute="fields",
        validate=validate.Length(max=100),
        metadata={"description": "When sent, replaces the module's whole field list"},
    )


class QuestionSchema(Schema):
    id = fields.Integer(dump_only=True)
    key = fields.String(required=True, validate=KEY)
    question = fields.String(required=True, validate=validate.Length(min=1, max=500))
    component_type = fields.String(required=True, validate=validate.OneOf(services.QUESTION_COMPONENTS))
    is_required = fields.Boolean(load_default=True)
    options = fields.List(fields.Nested(OptionSchema), load_default=list, validate=validate.Length(max=100))
    sort = fields.Integer(validate=DB_INTEGER)


class QuestionnaireSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=128))
    description = fields.String(validate=validate.Length(max=500))
    is_enabled = fields.Boolean()
    sort = fields.Integer(validate=DB_INTEGER)
    questions = fields.List(fields.Nested(QuestionSchema), required=True, validate=validate.Length(max=200))


class QuestionnaireUpdateSchema(QuestionnaireSchema):
    name = fields.String(validate=validate.Length(min=1, max=128))
    questions = fields.List(
        fields.Nested(QuestionSchema),
        validate=validate.Length(max=200),
        metadata={"description": "When sent, replaces the questions (kept keys keep their ids)"},
    )


class QuestionnaireListSchema(Schema):
    list = fields.List(fields.Nested(QuestionnaireSchema))
    total = fields.Integer()
