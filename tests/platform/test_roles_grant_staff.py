"""Giving someone a role is enough for them to sign in to the admin; taking their last role
away takes the admin away. Both sides of the relation (the user's form, the group's) count."""

from __future__ import annotations

from django.contrib.auth.models import Group, User

from etl_monitor.roles import Role, roles_sync


def _user(**extra) -> User:
    roles_sync()
    return User.objects.create_user(username="nina", password="pw-for-tests-123", **extra)


def test_a_role_given_makes_the_user_staff(db):
    user = _user()
    assert not user.is_staff
    user.groups.add(Group.objects.get(name=Role.VIEWER))
    assert user.is_staff
    assert User.objects.get(pk=user.pk).is_staff


def test_the_last_role_taken_away_revokes_staff(db):
    user = _user()
    user.groups.add(Group.objects.get(name=Role.VIEWER), Group.objects.get(name=Role.EDITOR))
    user.groups.remove(Group.objects.get(name=Role.VIEWER))
    assert User.objects.get(pk=user.pk).is_staff  # still an Editor
    user.groups.clear()
    assert not User.objects.get(pk=user.pk).is_staff


def test_adding_users_to_a_role_group_makes_them_staff(db):
    user = _user()
    group = Group.objects.get(name=Role.OPERATOR)
    group.user_set.add(user)
    assert User.objects.get(pk=user.pk).is_staff
    group.user_set.clear()
    assert not User.objects.get(pk=user.pk).is_staff


def test_a_group_that_is_no_role_changes_nothing(db):
    user = _user()
    user.groups.add(Group.objects.create(name="book-club"))
    assert not User.objects.get(pk=user.pk).is_staff


def test_a_superuser_keeps_staff_without_roles(db):
    user = _user(is_staff=True, is_superuser=True)
    user.groups.add(Group.objects.get(name=Role.VIEWER))
    user.groups.clear()
    assert User.objects.get(pk=user.pk).is_staff


def test_a_viewer_given_the_role_in_the_user_form_can_sign_in(client, admin_user):
    user = _user()
    client.force_login(admin_user)
    form = client.get(f"/admin/auth/user/{user.pk}/change/").context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name != "password"}
    data.update(
        groups=[Group.objects.get(name=Role.VIEWER).pk],
        user_permissions=[],
        date_joined_0=user.date_joined.strftime("%Y-%m-%d"),
        date_joined_1=user.date_joined.strftime("%H:%M:%S"),
        last_login_0="",
        last_login_1="",
    )
    data.pop("date_joined", None)
    data.pop("last_login", None)
    response = client.post(f"/admin/auth/user/{user.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert User.objects.get(pk=user.pk).is_staff
    client.logout()
    signed_in = client.post(
        "/admin/login/?next=/admin/", {"username": "nina", "password": "pw-for-tests-123", "next": "/admin/"}
    )
    assert signed_in.status_code == 302 and signed_in["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_without_a_role_the_sign_in_is_refused(client, db):
    _user()
    page = client.post("/admin/login/", {"username": "nina", "password": "pw-for-tests-123", "next": "/admin/"})
    assert page.status_code == 200
    assert "staff account" in page.content.decode()
