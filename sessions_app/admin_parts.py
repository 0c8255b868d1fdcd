"""What the admin's pages share: times to the millisecond, lists that say
they are not live, and actions only for those who may act on every session."""

from django.contrib import admin
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from sessions_app import access


def precise(value) -> str:
    """A time to the millisecond, in the server's time zone: events and log
    lines come many a second."""
    if value is None:
        return "–"
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class NotLive:
    """A list that shows its rows as they were when it loaded says so, and
    links to the page that follows them live. Newest first."""

    change_list_template = "admin/switchboard_change_list.html"
    ordering = ("-id",)
    live_page = ("sessions", "the sessions page")

    def changelist_view(self, request, extra_context=None):
        name, label = self.live_page
        live = {"live_url": reverse(name), "live_label": label}
        return super().changelist_view(request, {**(extra_context or {}), **live})

    @admin.display(description="live page")
    def live(self, obj):
        return format_html('<a href="{}">watch</a>', obj.get_absolute_url())


class Acts:
    """Admin actions that act on sessions (cancel, retry, replay) are offered,
    and accepted, only to those who may act on every session
    (access.acts_on_all); a viewer's admin is read-only."""

    def has_act_permission(self, request) -> bool:
        return access.acts_on_all(request.user)
