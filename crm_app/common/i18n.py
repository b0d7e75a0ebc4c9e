"""Messages in English, 简体中文 and 繁體中文, chosen by the request's Accept-Language."""

from flask import has_request_context, request

LANGUAGES = ("en", "zh-CN", "zh-TW")

MESSAGES = {
    "bad_request": ("The request could not be understood.", "请求无法解析。", "請求無法解析。"),
    "validation_error": ("Some fields are invalid.", "部分字段无效。", "部分欄位無效。"),
    "unauthorized": ("Authentication is required.", "需要登录。", "需要登入。"),
    "token_expired": ("The token has expired.", "令牌已过期。", "權杖已過期。"),
    "token_invalid": ("The token is invalid.", "令牌无效。", "權杖無效。"),
    "token_revoked": ("The token has been revoked.", "令牌已被撤销。", "權杖已被撤銷。"),
    "forbidden": ("You are not allowed to do this.", "您无权执行此操作。", "您無權執行此操作。"),
    "not_found": ("Not found.", "未找到。", "找不到。"),
    "method_not_allowed": ("Method not allowed.", "不允许的请求方法。", "不允許的請求方法。"),
    "conflict": ("The request conflicts with the current state.", "请求与当前状态冲突。", "請求與目前狀態衝突。"),
    "payload_too_large": ("The upload is too large.", "上传文件过大。", "上傳檔案過大。"),
    "unsupported_media_type": ("This file type is not accepted.", "不支持的文件类型。", "不支援的檔案類型。"),
    "upload_limit": (
        "Too many uploads in the last hour; try again later.",
        "最近一小时上传次数过多，请稍后再试。",
        "最近一小時上傳次數過多，請稍後再試。",
    ),
    "upload_bytes_limit": (
        "Too much uploaded in the last day; try again later.",
        "最近一天上传的数据量已达上限，请稍后再试。",
        "最近一天上傳的資料量已達上限，請稍後再試。",
    ),
    "demo_account_limit": (
        "You have as many demo accounts open as allowed.",
        "您的模拟账户数量已达上限。",
        "您的模擬帳戶數量已達上限。",
    ),
    "application_limit": (
        "You already have an account application waiting for review.",
        "您已有待审核的开户申请。",
        "您已有待審核的開戶申請。",
    ),
    "redirect_not_allowed": (
        "This address is not one we may send you back to.",
        "不允许跳转到该地址。",
        "不允許跳轉到該位址。",
    ),
    "e_verify_unavailable": (
        "Electronic identity verification is not offered here.",
        "此处未提供电子身份认证。",
        "此處未提供電子身分認證。",
    ),
    "too_many_requests": (
        "Too many requests; try again later.",
        "请求过于频繁，请稍后再试。",
        "請求過於頻繁，請稍後再試。",
    ),
    "internal_error": ("Something went wrong on our side.", "服务器内部错误。", "伺服器內部錯誤。"),
    "service_unavailable": ("A service we depend on is unavailable.", "依赖的服务不可用。", "依賴的服務不可用。"),
    "invalid_credentials": ("Wrong email or password.", "邮箱或密码错误。", "電子郵件或密碼錯誤。"),
    "user_disabled": ("This account is disabled.", "该账户已被禁用。", "該帳戶已被停用。"),
    "captcha_required": ("Captcha verification is required.", "需要人机验证。", "需要人機驗證。"),
    "captcha_failed": ("Captcha verification failed.", "人机验证失败。", "人機驗證失敗。"),
    "captcha_unavailable": ("The captcha service is unavailable.", "验证码服务不可用。", "驗證碼服務不可用。"),
    "email_taken": ("This email is already registered.", "该邮箱已被注册。", "該電子郵件已被註冊。"),
    "password_too_short": ("The password needs at least 10 characters.", "密码至少需要 10 个字符。", "密碼至少需要 10 個字元。"),
    "password_too_long": ("The password may have at most 128 characters.", "密码最多 128 个字符。", "密碼最多 128 個字元。"),
    "password_common": (
        "This password is on a list of common passwords; choose another.",
        "该密码属于常见密码，请换一个。",
        "該密碼屬於常見密碼，請換一個。",
    ),
    "password_guessable": (
        "This password is too easy to guess; try a longer phrase of unrelated words.",
        "该密码过于容易被猜到，请使用由不相关词语组成的更长短语。",
        "該密碼過於容易被猜到，請使用由不相關詞語組成的更長短語。",
    ),
    "password_equals_email": (
        "The password must not be your email address.",
        "密码不能与邮箱地址相同。",
        "密碼不能與電子郵件地址相同。",
    ),
    "password_reused": (
        "The new password must differ from the current one.",
        "新密码不能与当前密码相同。",
        "新密碼不能與目前密碼相同。",
    ),
    "otp_required": (
        "Enter the code from your authenticator app.",
        "请输入身份验证器应用中的验证码。",
        "請輸入驗證器應用程式中的驗證碼。",
    ),
    "otp_invalid": ("The two-factor code is wrong or was already used.", "两步验证码错误或已被使用。", "兩步驟驗證碼錯誤或已被使用。"),
    "otp_enrolment_required": (
        "Turn on two-factor sign-in before using the back office.",
        "使用后台前请先开启两步验证。",
        "使用後台前請先開啟兩步驟驗證。",
    ),
    "otp_already_enabled": ("Two-factor sign-in is already on.", "两步验证已开启。", "兩步驟驗證已開啟。"),
    "otp_not_enabled": ("Two-factor sign-in is not on.", "两步验证未开启。", "兩步驟驗證未開啟。"),
    "otp_not_started": (
        "Start two-factor enrolment first.",
        "请先开始两步验证设置。",
        "請先開始兩步驟驗證設定。",
    ),
    "wrong_password": ("The password is wrong.", "密码错误。", "密碼錯誤。"),
    "wrong_old_password": ("The current password is wrong.", "原密码错误。", "原密碼錯誤。"),
    "invalid_invite_code": ("Unknown invitation code.", "邀请码无效。", "邀請碼無效。"),
    "email_code_required": ("An email verification code is required.", "需要邮箱验证码。", "需要電子郵件驗證碼。"),
    "email_code_invalid": (
        "The email code is wrong or has expired.",
        "邮箱验证码错误或已过期。",
        "電子郵件驗證碼錯誤或已過期。",
    ),
    "email_code_too_soon": (
        "A code was sent recently; wait before asking again.",
        "验证码刚刚发送，请稍后再试。",
        "驗證碼剛剛發送，請稍後再試。",
    ),
    "email_not_yours": (
        "Signed in, you can only ask for a code sent to your own address.",
        "登录后只能向您本人的邮箱发送验证码。",
        "登入後只能向您本人的電子郵件發送驗證碼。",
    ),
    "clock_skew": (
        "received_at is too far from the server time.",
        "received_at 与服务器时间相差过大。",
        "received_at 與伺服器時間相差過大。",
    ),
    "refresh_token_required": ("A refresh token is required here.", "此处需要刷新令牌。", "此處需要重新整理權杖。"),
    "access_token_required": ("An access token is required here.", "此处需要访问令牌。", "此處需要存取權杖。"),
    "invalid_parent_ib": (
        "The parent must be an IB and must not create a cycle.",
        "上级必须是 IB，且不能形成循环。",
        "上級必須是 IB，且不能形成循環。",
    ),
    "invalid_user_type_change": (
        "This user type change is not allowed.",
        "不允许此用户类型变更。",
        "不允許此使用者類型變更。",
    ),
    "currency_exists": ("This currency already exists.", "该货币已存在。", "該貨幣已存在。"),
    "insufficient_funds": ("Not enough free margin on this trading account.", "该交易账户可用保证金不足。", "該交易帳戶可用保證金不足。"),
    "quote_mismatch": ("The fee, rate or amount sent differs from the server's; see the expected values.", "手续费、汇率或金额与服务器计算不一致，请查看期望值。", "手續費、匯率或金額與伺服器計算不一致，請查看期望值。"),
    "demo_account_not_allowed": (
        "Demo accounts hold no real money: use a live account.",
        "模拟账户没有真实资金，请使用真实账户。",
        "模擬帳戶沒有真實資金，請使用真實帳戶。",
    ),
    "currency_mismatch": (
        "Both accounts must be in the same currency.",
        "两个账户的货币必须相同。",
        "兩個帳戶的貨幣必須相同。",
    ),
    "kyc_locked": (
        "The KYC is under review or approved and can no longer be changed.",
        "KYC 资料正在审核或已通过，无法再修改。",
        "KYC 資料正在審核或已通過，無法再修改。",
    ),
    "e_verify_attempts_exhausted": (
        "No identity verification attempts are left; the back office will review your documents.",
        "身份核验次数已用完，后台将人工审核您的资料。",
        "身分核驗次數已用完，後台將人工審核您的資料。",
    ),
    "kyc_required": (
        "Your identity verification (KYC) must be approved first.",
        "请先通过身份认证（KYC）审核。",
        "請先通過身分認證（KYC）審核。",
    ),
    "payee_name_mismatch": (
        "The payee must be the account owner, with the name on the verified identity.",
        "收款人必须是账户本人，并使用已认证身份上的姓名。",
        "收款人必須是帳戶本人，並使用已認證身分上的姓名。",
    ),
    "amount_out_of_range": ("The amount is outside this channel's limits.", "金额超出该渠道的限额。", "金額超出該渠道的限額。"),
    "idempotency_key_reused": ("This Idempotency-Key was used with another request.", "该幂等键已用于其他请求。", "該冪等鍵已用於其他請求。"),
    "idempotency_key_in_use": ("A request with this Idempotency-Key is still running.", "使用该幂等键的请求仍在处理中。", "使用該冪等鍵的請求仍在處理中。"),
    "idempotency_key_interrupted": (
        "The first request with this Idempotency-Key failed after it was recorded.",
        "使用该幂等键的首个请求在记录后失败。",
        "使用該冪等鍵的首個請求在記錄後失敗。",
    ),
    "review_already_decided": ("This review item has already been decided.", "该审核项已处理。", "該審核項已處理。"),
    "trading_server_unavailable": ("The trading server is not answering; try again shortly.", "交易服务器暂时无响应，请稍后再试。", "交易伺服器暫時無回應，請稍後再試。"),
    "invalid_trading_password": ("The trading password does not meet the platform's rules.", "交易密码不符合平台规则。", "交易密碼不符合平台規則。"),
    "account_type_not_open": ("This account type is not open to you.", "该账户类型对您不可用。", "該帳戶類型對您不可用。"),
    "required_field": ("Missing data for required field.", "缺少必填字段。", "缺少必填欄位。"),
    "unknown_field": ("Unknown field.", "未知字段。", "未知欄位。"),
}

# marshmallow's stock messages, translated where they appear in field errors.
FIELD_MESSAGE_KEYS = {
    "Missing data for required field.": "required_field",
    "Unknown field.": "unknown_field",
    # The password policy's field messages (crm_app/auth/passwords.py POLICY_MESSAGES)
    "At least 10 characters.": "password_too_short",
    "At most 128 characters.": "password_too_long",
    "This password is on a list of common passwords.": "password_common",
    "This password is too easy to guess; try a longer phrase of unrelated words.": "password_guessable",
    "The password must not be your email address.": "password_equals_email",
    "The new password must differ from the current one.": "password_reused",
    # Two-factor sign-in (crm_app/auth/otp.py)
    "Wrong or already used code.": "otp_invalid",
    "A code from your authenticator app.": "otp_required",
    "The password is wrong.": "wrong_password",
}


def current_language():
    if not has_request_context():
        return "en"
    # Werkzeug orders the tags by their q-values.
    for value, quality in request.accept_languages:
        if quality <= 0:
            continue
        tag = value.lower()
        if tag.startswith("zh"):
            return "zh-TW" if any(marker in tag for marker in ("tw", "hk", "mo", "hant")) else "zh-CN"
        if tag.startswith("en"):
            return "en"
    return "en"


def translate(key, language=None, default=None):
    texts = MESSAGES.get(key)
    if texts is None:
        return default if default is not None else key
    language = language or current_language()
    return texts[LANGUAGES.index(language)]


def translate_field_errors(errors, language=None):
    """Translate marshmallow's stock messages inside a nested error dict."""
    language = language or current_language()
    if language == "en":
        return errors
    if isinstance(errors, dict):
        return {k: translate_field_errors(v, language) for k, v in errors.items()}
    if isinstance(errors, list):
        return [translate_field_errors(v, language) for v in errors]
    if isinstance(errors, str) and errors in FIELD_MESSAGE_KEYS:
        return translate(FIELD_MESSAGE_KEYS[errors], language)
    return errors
