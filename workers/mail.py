"""Mail jobs."""

from flask import current_app, render_template
from rq import Retry

from crm_app.integrations.mail import MailSettings, send_mail
from workers import enqueue, job

SUBJECTS = {
    "email_code": {
        "en": "Your verification code",
        "zh-CN": "您的验证码",
        "zh-TW": "您的驗證碼",
    }
}

SCENE_NAMES = {
    "register": {"en": "registration", "zh-CN": "注册", "zh-TW": "註冊"},
    "withdrawal": {"en": "withdrawal", "zh-CN": "出金", "zh-TW": "出金"},
    "transfer": {"en": "transfer", "zh-CN": "转账", "zh-TW": "轉帳"},
    "password_change": {"en": "password change", "zh-CN": "修改密码", "zh-TW": "修改密碼"},
}


@job(queue="default", timeout=60, result_ttl=0, retry=Retry(max=3, interval=[10, 30, 60]))
def send_email_code(email, scene, code, language, ttl_seconds):
    language = language if language in ("en", "zh-CN", "zh-TW") else "en"
    context = {
        "code": code,
        "scene": SCENE_NAMES[scene][language],
        "minutes": max(1, ttl_seconds // 60),
    }
    text = render_template(f"email/email_code.{language}.txt", **context)
    send_mail(
        MailSettings.from_config(current_app.config),
        to=email,
        subject=SUBJECTS["email_code"][language],
        text=text,
    )


def enqueue_email_code(email, scene, code, language, ttl_seconds):
    enqueue(send_email_code, email, scene, code, language, ttl_seconds, description=f"send_email_code(scene={scene})")
