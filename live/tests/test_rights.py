"""A socket's rights: the sockets of one user with the same rights share one
object and one user, and the user a socket brings keeps no permission caches
(a superuser's name every permission, three times over)."""

import pytest
from django.contrib.auth.models import Permission

from live.watchdog import Rights

pytestmark = pytest.mark.django_db


def test_sockets_of_one_user_share_their_rights_and_keep_no_caches(django_user_model):
    django_user_model.objects.create_superuser("root", password="pw")
    first, second = (django_user_model.objects.get(username="root") for _ in range(2))
    assert first is not second
    one, other = Rights.of(first), Rights.of(second)
    assert one is other and one.user is first
    assert len(one.permissions) == Permission.objects.count()
    caches = [name for name in vars(second) if name.endswith("_perm_cache")]
    assert caches == []


def test_changed_rights_are_not_shared(django_user_model):
    user = django_user_model.objects.create_user("plain", password="pw")
    before = Rights.of(django_user_model.objects.get(pk=user.pk))
    user.user_permissions.add(
        Permission.objects.get(codename="view_session", content_type__app_label="sessions_app")
    )
    after = Rights.of(django_user_model.objects.get(pk=user.pk))
    assert after is not before and after != before
    assert "sessions_app.view_session" in after.permissions - before.permissions
