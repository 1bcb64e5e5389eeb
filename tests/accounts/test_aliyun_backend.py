"""Aliyun SMS backend: the SendSms request it builds, and how it treats failures.

The SDK client returned by ``_client()`` is replaced by a recording fake; the
request and response objects are the SDK's own.
"""

from __future__ import annotations

import json

import pytest
from alibabacloud_dysmsapi20170525 import models as dysms_models
from django.test import Client, override_settings

from aladdin.accounts import sms
from aladdin.accounts.models import SmsMessage

ALIYUN = {
    "SMS_BACKEND": "aliyun",
    "ALIYUN_SMS_ACCESS_KEY_ID": "test-key-id",
    "ALIYUN_SMS_ACCESS_KEY_SECRET": "test-key-secret",
    "ALIYUN_SMS_SIGN_NAME": "阿拉丁算力",
    "ALIYUN_SMS_TEMPLATE_CODE": "SMS_123456789",
    "ALIYUN_SMS_ENDPOINT": "dysmsapi.aliyuncs.com",
}


class RecordingClient:
    """Stands in for alibabacloud_dysmsapi20170525.client.Client."""

    def __init__(self, code: str = "OK", message: str = "OK", error: Exception | None = None):
        self.requests: list[dysms_models.SendSmsRequest] = []
        self.code, self.message, self.error = code, message, error

    def send_sms(self, request: dysms_models.SendSmsRequest) -> dysms_models.SendSmsResponse:
        self.requests.append(request)
        if self.error:
            raise self.error
        body = dysms_models.SendSmsResponseBody(
            biz_id="900619746936498440^0", code=self.code, message=self.message, request_id="r-1"
        )
        return dysms_models.SendSmsResponse(headers={}, status_code=200, body=body)


@pytest.fixture
def fake(monkeypatch):
    client = RecordingClient()
    monkeypatch.setattr(sms.AliyunSmsBackend, "_client", lambda self: client)
    return client


@override_settings(**ALIYUN)
def test_send_code_builds_the_send_sms_request(fake):
    sms.AliyunSmsBackend().send_code(phone="+8613800138000", code="012345")

    (request,) = fake.requests
    assert isinstance(request, dysms_models.SendSmsRequest)
    assert request.phone_numbers == "13800138000"
    assert request.sign_name == "阿拉丁算力"
    assert request.template_code == "SMS_123456789"
    assert json.loads(request.template_param) == {"code": "012345"}


@override_settings(**ALIYUN)
@pytest.mark.parametrize(
    ("code", "message"),
    [("isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控"), ("isv.MOBILE_NUMBER_ILLEGAL", "bad")],
)
def test_a_refusal_raises_sms_error(fake, code, message):
    fake.code, fake.message = code, message

    with pytest.raises(sms.SmsError) as failed:
        sms.AliyunSmsBackend().send_code(phone="+8613800138000", code="012345")

    assert code in str(failed.value)


@override_settings(**ALIYUN)
def test_a_transport_error_raises_sms_error(fake):
    fake.error = ConnectionError("connection reset")

    with pytest.raises(sms.SmsError, match="connection reset"):
        sms.AliyunSmsBackend().send_code(phone="+8613800138000", code="012345")


@override_settings(**ALIYUN)
def test_the_real_client_is_configured_from_settings():
    client = sms.AliyunSmsBackend()._client()

    assert client._endpoint == "dysmsapi.aliyuncs.com"


@override_settings(**ALIYUN)
def test_settings_choose_the_aliyun_backend():
    assert isinstance(sms.get_backend(), sms.AliyunSmsBackend)


@override_settings(**ALIYUN)
def test_login_codes_go_through_aliyun(db, fake, make_user):
    user = make_user()

    response = Client(REMOTE_ADDR="10.50.0.1").post("/accounts/login/code/", {"phone": user.phone})

    assert response.status_code == 302
    (request,) = fake.requests
    assert request.phone_numbers == user.phone.removeprefix("+86")
    assert json.loads(request.template_param)["code"].isdigit()
    message = SmsMessage.objects.get(phone=user.phone)
    assert (message.backend, message.ok) == ("aliyun", True)


@override_settings(**ALIYUN)
def test_a_failed_send_is_recorded_without_the_code(db, fake, make_user):
    user = make_user()
    fake.code, fake.message = "isv.AMOUNT_NOT_ENOUGH", "余额不足"

    Client(REMOTE_ADDR="10.50.0.2").post("/accounts/login/code/", {"phone": user.phone})

    message = SmsMessage.objects.get(phone=user.phone)
    assert (message.backend, message.ok) == ("aliyun", False)
    assert "isv.AMOUNT_NOT_ENOUGH" in message.error
    code = json.loads(fake.requests[0].template_param)["code"]
    assert code not in message.error


@override_settings(**ALIYUN)
def test_notices_without_a_notice_template_are_only_logged(fake, caplog):
    sms.AliyunSmsBackend().send_text(phone="+8613800138000", text="no account uses this number")

    assert fake.requests == []
    assert "not sent (no notice template)" in caplog.text
