"""The staff search: /admin/backoffice/search/?q= by phone, username, order number, job id, workshop."""

from __future__ import annotations

import pytest

from .u360_fixtures import paid_order, support_user

pytestmark = pytest.mark.django_db
SEARCH = "/admin/backoffice/search/"


def user_page(user) -> str:
    return f"/admin/backoffice/users/{user.pk}/"


@pytest.mark.parametrize(
    "typed", ["13912345678", "139 1234 5678", "+86 139-1234-5678", "0086 13912345678"]
)
def test_a_phone_as_people_type_it_opens_the_users_page(staff_client, make_user, typed):
    wanted = make_user(phone="+8613912345678")
    make_user(phone="+8613900000000")

    response = staff_client.get(SEARCH, {"q": typed})

    assert response.status_code == 302
    assert response["Location"] == user_page(wanted)


def test_a_username_opens_the_users_page(staff_client, make_user):
    wanted = make_user(username="alice")

    response = staff_client.get(SEARCH, {"q": "ALICE"})

    assert response["Location"] == user_page(wanted)


def test_an_order_number_opens_its_buyers_page(staff_client, make_user, plans):
    buyer = make_user()
    order = paid_order(buyer, plans["trial"])

    response = staff_client.get(SEARCH, {"q": order.out_trade_no})

    assert response["Location"] == user_page(buyer)


@pytest.mark.parametrize("typed", ["{id}", "job-{id}", "JOB-{id}", "#{id}"])
def test_a_job_id_opens_its_owners_page(staff_client, make_user, make_job, typed):
    owner = make_user()
    job = make_job(owner)

    response = staff_client.get(SEARCH, {"q": typed.format(id=job.pk)})

    assert response["Location"] == user_page(owner)


def test_a_workshop_name_shared_by_several_users_lists_them(staff_client, make_user, make_workshop):
    first, second = make_user(), make_user()
    make_workshop(first, name="bert-train")
    make_workshop(second, name="bert-train")

    response = staff_client.get(SEARCH, {"q": "bert-train"})

    assert response.status_code == 200
    assert {h.user for h in response.context["hits"]} == {first, second}
    assert "2 users found." in response.content.decode()
    assert user_page(first) in response.content.decode()


def test_nothing_found_says_what_can_be_searched(staff_client):
    response = staff_client.get(SEARCH, {"q": "nobody-here"})

    assert response.status_code == 200
    assert "No user matches" in response.content.decode()


def test_a_visitor_who_is_not_staff_goes_to_the_admin_login(student_client):
    response = student_client.get(SEARCH, {"q": "x"})

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_staff_without_the_view_permission_are_refused(client):
    client.force_login(support_user(view=False))

    assert client.get(SEARCH, {"q": "x"}).status_code == 403


def test_support_with_the_view_permission_may_search(client, make_user):
    wanted = make_user(username="bob")
    client.force_login(support_user())

    assert client.get(SEARCH, {"q": "bob"})["Location"] == user_page(wanted)


def test_the_last_digits_of_a_phone_find_the_user(staff_client, make_user):
    wanted = make_user(phone="+8613912348765")
    make_user(phone="+8613900001111")

    response = staff_client.get(SEARCH, {"q": "8765"})

    assert response["Location"] == user_page(wanted)


def test_part_of_a_username_lists_the_users_it_fits(staff_client, make_user):
    first, second = make_user(username="lab-zhang"), make_user(username="lab-wang")
    make_user(username="other")

    response = staff_client.get(SEARCH, {"q": "lab-"})

    assert {h.user for h in response.context["hits"]} == {first, second}
