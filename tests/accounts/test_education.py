"""Education status: verify an e-mail under an education domain, or staff approval."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

from aladdin.accounts import services
from aladdin.accounts.choices import EducationStatus
from aladdin.accounts.models import StaffAction

REQUEST = "/account/education/"

pytestmark = pytest.mark.django_db


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def link_in(message) -> str:
    """The path of the confirmation link in an e-mail."""
    return urlsplit(re.search(r"https?://\S+", message.body)[0]).path


def page_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_verify_an_edu_cn_address(student):
    client = browser(student)

    response = client.post(REQUEST, {"email": "Li.Hua@Mail.PKU.edu.cn"}, follow=True)

    assert "We sent a confirmation link to" in " ".join(page_messages(response))
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["li.hua@mail.pku.edu.cn"]
    student.refresh_from_db()
    assert student.education_status == EducationStatus.NONE, "not before the link is opened"

    response = client.get(link_in(mail.outbox[0]), follow=True)

    assert "Education prices apply" in " ".join(page_messages(response))
    student.refresh_from_db()
    assert student.education_status == EducationStatus.EMAIL
    assert student.is_education
    assert student.education_email == "li.hua@mail.pku.edu.cn"
    assert student.education_verified_at is not None
    assert 'data-testid="education-status"' in response.content.decode()


def test_an_edu_address_works_too(student):
    client = browser(student)
    client.post(REQUEST, {"email": "ada@cs.stanford.edu"})

    client.get(link_in(mail.outbox[0]))

    student.refresh_from_db()
    assert student.education_status == EducationStatus.EMAIL


@pytest.mark.parametrize(
    "email", ["someone@gmail.com", "x@edu.cn.example.com", "x@notedu.cn", "x@qq.com"]
)
def test_other_domains_are_refused_with_a_clear_message(student, email):
    response = browser(student).post(REQUEST, {"email": email}, follow=True)

    assert mail.outbox == []
    text = " ".join(page_messages(response))
    assert f"{email} is not an education address" in text
    assert ".edu.cn" in text and ".edu" in text
    student.refresh_from_db()
    assert student.education_status == EducationStatus.NONE


def test_an_invalid_address_is_refused(student):
    response = browser(student).post(REQUEST, {"email": "not an address"}, follow=True)

    assert "Enter a valid e-mail address." in page_messages(response)
    assert mail.outbox == []


def test_the_link_works_only_for_the_account_that_asked(student, make_user):
    browser(student).post(REQUEST, {"email": "a@tsinghua.edu.cn"})
    other = make_user(language="en")

    response = browser(other).get(link_in(mail.outbox[0]), follow=True)

    assert "This link was sent to another account." in page_messages(response)
    other.refresh_from_db()
    assert other.education_status == EducationStatus.NONE


def test_the_link_expires_after_a_day(student):
    client = browser(student)
    client.post(REQUEST, {"email": "a@fudan.edu.cn"})

    with time_machine.travel(timezone.now() + timedelta(hours=24, minutes=1)):
        response = client.get(link_in(mail.outbox[0]), follow=True)

    assert "This link has expired. Ask for a new one." in page_messages(response)
    student.refresh_from_db()
    assert student.education_status == EducationStatus.NONE


def test_a_tampered_link_is_refused(student):
    client = browser(student)
    client.post(REQUEST, {"email": "a@zju.edu.cn"})
    token = link_in(mail.outbox[0]).rstrip("/").rsplit("/", 1)[1]

    response = client.get(f"/account/education/confirm/{token[:-2]}xx/", follow=True)

    assert "This link is not valid." in page_messages(response)


def test_one_address_gives_education_prices_to_one_account(student, make_user):
    client = browser(student)
    client.post(REQUEST, {"email": "a@sjtu.edu.cn"})
    client.get(link_in(mail.outbox[0]))
    other = make_user(language="en")

    response = browser(other).post(REQUEST, {"email": "A@sjtu.edu.cn"}, follow=True)

    assert "already gives education prices to another account" in " ".join(page_messages(response))
    assert len(mail.outbox) == 1


def test_a_few_links_a_day_at_most(student):
    for n in range(services.EDU_MAILS_PER_DAY):
        services.education_request_verification(user=student, email=f"a{n}@nju.edu.cn")

    with pytest.raises(ValidationError):
        services.education_request_verification(user=student, email="z@nju.edu.cn")
    assert len(mail.outbox) == services.EDU_MAILS_PER_DAY


def test_login_is_required(db):
    response = Client().post(REQUEST, {"email": "a@pku.edu.cn"})

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert mail.outbox == []


def test_staff_approve_and_revoke_education_status(student, make_user):
    staff = make_user(is_staff=True)

    services.education_set_by_staff(
        user=student, actor=staff, approved=True, reason="student card checked"
    )

    student.refresh_from_db()
    assert student.education_status == EducationStatus.STAFF
    assert student.is_education
    action = StaffAction.objects.get(target_user=student)
    assert (action.actor, action.action, action.reason) == (
        staff,
        "education_approve",
        "student card checked",
    )

    services.education_set_by_staff(user=student, actor=staff, approved=False, reason="graduated")

    student.refresh_from_db()
    assert student.education_status == EducationStatus.NONE
    assert StaffAction.objects.filter(target_user=student, action="education_revoke").exists()


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        ("a@pku.edu.cn", True),
        ("a@mail.pku.edu.cn", True),
        ("a@mit.edu", True),
        ("A@MIT.EDU", True),
        ("a@edu.cn.evil.com", False),
        ("a@educn.com", False),
        ("a@fakeedu", False),
        ("a@gmail.com", False),
    ],
)
def test_education_domains(email, expected):
    assert services.is_education_email(email) is expected
