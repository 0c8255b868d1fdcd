"""The webhook outbox in the admin: what is still to be sent, what failed."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from operations import outbox
from operations.models import Delivery


class StatusFilter(admin.SimpleListFilter):
    """By status; by default the deliveries not made yet (pending and failed)."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [*Delivery.State.choices, ("all", "All")]

    def choices(self, changelist):
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "Not delivered",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == str(lookup),
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset.exclude(status=Delivery.State.DELIVERED)
        if self.value() == "all":
            return queryset
        return queryset.filter(status=self.value())


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    """Rows are written by alerts and changed by the deliverer; people only
    look, delete, and ask for another try."""

    list_display = (
        "id",
        "event",
        "seq",
        "target",
        "status",
        "attempts",
        "next_attempt_at",
        "created_at",
        "delivered_at",
        "last_error",
    )
    list_filter = (StatusFilter, "event")
    ordering = ("-id",)
    actions = ("retry_now",)
    readonly_fields = (
        "webhook", "target", "event", "seq", "payload", "status", "attempts",
        "next_attempt_at", "last_error", "created_at", "delivered_at",
    )  # fmt: skip
    exclude = ("url_key", "claim")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Retry now", permissions=["change"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = outbox.retry_now(queryset)
        skipped = queryset.count() - count
        text = f"{count} deliver{'y' if count == 1 else 'ies'} to be tried now."
        if skipped:
            text += f" {skipped} left as they are (delivered, or being tried)."
        self.message_user(request, text, messages.SUCCESS)
