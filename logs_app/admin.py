from django.contrib import admin

from logs_app.models import LEVELS, LogEntry, level_name
from sessions_app.admin import NotLive, precise


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
