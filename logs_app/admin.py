from django.contrib import admin

from logs_app.models import LEVELS, AlertRule, LogEntry, level_name
from sessions_app.admin_parts import NotLive, precise


class LevelFilter(admin.SimpleListFilter):
    title = "minimum level"
    parameter_name = "level"

    def lookups(self, request, model_admin):
        return [(str(number), name) for name, number in LEVELS.items()]

    def queryset(self, request, queryset):
        if self.value() and self.value().isdigit():
            return queryset.filter(level__gte=int(self.value()))
        return queryset


@admin.register(LogEntry)
class LogEntryAdmin(NotLive, admin.ModelAdmin):
    # The message early and the session and task by number: it stays in view
    # at 1,400 px whatever the names (a session's log page follows it live).
    list_display = ("id", "time", "level_label", "short_message", "session_id", "task_id", "logger")
    list_display_links = ("id", "time")
    list_filter = (LevelFilter,)
    search_fields = ("message", "logger")
    raw_id_fields = ("session", "task")
    show_full_result_count = False

    @admin.display(description="time", ordering="ts")
    def time(self, entry: LogEntry) -> str:
        return precise(entry.ts)

    @admin.display(description="level", ordering="level")
    def level_label(self, entry: LogEntry) -> str:
        return level_name(entry.level)

    @admin.display(description="message")
    def short_message(self, entry: LogEntry) -> str:
        return entry.message if len(entry.message) <= 100 else entry.message[:99] + "…"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    """Log alert rules (logs_app.alerting); the pattern is checked by RE2 on save."""

    list_display = ("name", "active", "scope", "level", "logger", "pattern", "limits", "fired")
    list_filter = ("active",)
    search_fields = ("name", "pattern", "logger")
    raw_id_fields = ("session", "task")
    filter_horizontal = ("webhooks",)
    readonly_fields = ("last_fired", "fired")
    fieldsets = (
        (None, {"fields": ("name", "active")}),
        ("Lines it matches", {"fields": ("session", "level", "task", "logger", "pattern")}),
        ("When it fires", {"fields": ("threshold", "window_seconds", "quiet_seconds")}),
        ("Where it goes", {"fields": ("webhooks",)}),
        ("So far", {"fields": ("last_fired", "fired")}),
    )

    @admin.display(description="where")
    def scope(self, rule: AlertRule) -> str:
        return f"session #{rule.session_id}" if rule.session_id else "every session"

    @admin.display(description="fires at")
    def limits(self, rule: AlertRule) -> str:
        return f"{rule.threshold} in {rule.window_seconds} s, then quiet {rule.quiet_seconds} s"

    @admin.display(description="alerts sent")
    def fired(self, rule: AlertRule) -> int:
        state = getattr(rule, "state", None)
        return state.fired if state else 0

    @admin.display(description="last alert")
    def last_fired(self, rule: AlertRule) -> str:
        state = getattr(rule, "state", None)
        return precise(state.fired_at) if state and state.fired_at else "never"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("state")
