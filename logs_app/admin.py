from django.contrib import admin

from logs_app.models import LEVELS, LogEntry, level_name


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
class LogEntryAdmin(admin.ModelAdmin):
    list_display = ("id", "ts", "level_label", "session", "task", "logger", "short_message")
    list_filter = (LevelFilter,)
    search_fields = ("message", "logger")
    list_select_related = ("session", "task")
    raw_id_fields = ("session", "task")
    show_full_result_count = False

    @admin.display(description="level", ordering="level")
    def level_label(self, entry: LogEntry) -> str:
        return level_name(entry.level)

    @admin.display(description="message")
    def short_message(self, entry: LogEntry) -> str:
        return entry.message if len(entry.message) <= 120 else entry.message[:119] + "…"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
