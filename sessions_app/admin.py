"""The admin as a live console: edits and actions go through the services (or
the model signals), so everyone watching sees them as events."""

import io

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpResponse
from django.utils import timezone

from live.errors import Refused
from live.models import ApiToken, Event
from sessions_app import eventfiles, exporting, resend, rules, services
from sessions_app.admin_parts import Acts, NotLive, precise
from sessions_app.models import Session, Task, Webhook
from sessions_app.question_admin import QuestionAdmin

__all__ = ["QuestionAdmin"]


class LiveForm(forms.ModelForm):
    """A form over a row that jobs keep changing while the page is open.

    Each field carries the value the page was shown with (a hidden initial),
    so "changed" means edited by the person, not moved on by the job since; and
    only edited fields are written, onto the row as it is at save time. An
    untouched form writes nothing, and a job's newer progress is never put back.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.show_hidden_initial = True

    def edited(self, name: str) -> bool:
        return self.instance.pk is None or name in self.changed_data

    def current(self):
        """The row as it is now, locked, the session's row first (one lock order)."""
        return (
            type(self.instance)
            ._default_manager.select_for_update(no_key=True)
            .get(pk=self.instance.pk)
        )

    def save(self, commit: bool = True):
        if self.instance.pk is None:
            return super().save(commit)
        with transaction.atomic():
            row = self.current()
            for name in self.changed_data:
                if name in self.cleaned_data:
                    setattr(row, name, getattr(self.instance, name))
            self.instance = row
            return super().save(commit)


class TaskForm(LiveForm):
    class Meta:
        model = Task
        fields = (
            "session",
            "name",
            "external_id",
            "status",
            "progress",
            "message",
            "details",
            "result",
            "error",
        )

    def clean_status(self):
        status = self.cleaned_data["status"]
        if not self.edited("status"):
            return status
        before = self.instance.status if self.instance.pk else None
        problem = rules.transition_problem(before, status, "task")
        if problem:
            problem = problem.replace("retry the task", "use the “Retry” action")
            raise forms.ValidationError(problem[0].upper() + problem[1:] + ".")
        return status

    def clean_progress(self):
        try:
            return rules.check_progress(self.cleaned_data["progress"])
        except Refused as error:
            raise forms.ValidationError(f"Progress {error.message}.") from None

    def current(self):
        Session.objects.select_for_update(no_key=True).filter(pk=self.instance.session_id).first()
        return super().current()


class SessionForm(LiveForm):
    class Meta:
        model = Session
        fields = ("name", "external_id", "status", "metadata", "owner")


class TaskInline(admin.TabularInline):
    model = Task
    form = TaskForm
    extra = 0
    fields = ("name", "status", "progress", "message", "cancel_requested", "attempt")
    readonly_fields = ("cancel_requested", "attempt")
    show_change_link = True

    def get_formset(self, request, obj=None, **kwargs):
        # Within the page: a message is one line here (the task's own page has it whole).
        kwargs["widgets"] = {
            "name": forms.TextInput(attrs={"size": 24}),
            "message": forms.TextInput(attrs={"size": 36}),
            "progress": forms.NumberInput(attrs={"style": "width: 5em"}),
        }
        return super().get_formset(request, obj, **kwargs)


def _export(queryset, filename: str) -> HttpResponse:
    out = io.StringIO()
    for session in queryset.order_by("id"):
        exporting.export(out, session_id=session.pk)
    response = HttpResponse(out.getvalue(), content_type="application/x-ndjson")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@admin.register(Session)
class SessionAdmin(Acts, NotLive, admin.ModelAdmin):
    form = SessionForm
    list_display = (
        "id", "name", "status", "completed_tasks", "total_tasks", "owner", "created", "live",
    )  # fmt: skip
    list_display_links = ("id", "name")
    list_filter = ("status", "created_at")
    search_fields = ("name", "external_id")
    readonly_fields = (*Session.COUNTS, "started_at", "finished_at")
    date_hierarchy = "created_at"
    inlines = [TaskInline]
    actions = ["cancel", "export", "replay"]

    @admin.display(description="created", ordering="created_at")
    def created(self, session: Session) -> str:
        return precise(session.created_at)

    def delete_model(self, request, obj):
        services.delete_sessions([obj.pk])

    def delete_queryset(self, request, queryset):
        services.delete_sessions(list(queryset.values_list("pk", flat=True)))

    @admin.action(
        description="Cancel the selected sessions and their unfinished tasks", permissions=["act"]
    )
    def cancel(self, request, queryset):
        for session in queryset:
            services.cancel_session(session.pk, by=request.user.get_username())
        self.message_user(request, f"Cancelled {queryset.count()} session(s).", messages.SUCCESS)

    @admin.action(
        description="Export the events of the selected sessions (JSON Lines)", permissions=["view"]
    )
    def export(self, request, queryset):
        return _export(queryset, f"switchboard-{timezone.now():%Y%m%d-%H%M%S}.jsonl")

    @admin.action(
        description="Replay the selected sessions as new copies, live", permissions=["act"]
    )
    def replay(self, request, queryset):
        """Re-run each recorded session as a new session (external_id '<old>-replay-N')."""
        copies = 0
        for session in queryset.order_by("id"):
            out = io.StringIO()
            exporting.export(out, session_id=session.pk)
            suffix = f"replay-{timezone.now():%H%M%S%f}"
            key = f"{session.external_id or session.pk}-{suffix}"
            lines = eventfiles.parse_lines(iter(out.getvalue().splitlines()))
            for line in lines:
                line.session = key
                if line.kind == "session.update":
                    line.data = {
                        k: v for k, v in line.data.items() if k not in ("id", "external_id")
                    }
                if line.task is not None:
                    line.task = f"{line.task}-{suffix}"
                # A log.append line's entries, as checked (what the replay applies).
                for entry in line.checked if line.kind == "log.append" else ():
                    if entry.get("task_id"):
                        entry["task_id"] = f"{entry['task_id']}-{suffix}"
                    if entry.get("uid"):
                        entry["uid"] = f"{entry['uid']}-{suffix}"
            try:
                eventfiles.Replay(lines, speed=0).run()
            except eventfiles.ReplayError as error:
                done = f"the {error.replayed} lines before it were" if error.replayed else "nothing"
                self.message_user(
                    request,
                    f"Session {session.pk} stopped at {error}; {done} replayed.",
                    messages.ERROR,
                )
                continue
            copies += 1
        self.message_user(request, f"Replayed {copies} session(s) as new copies.", messages.SUCCESS)


@admin.register(Task)
class TaskAdmin(Acts, NotLive, admin.ModelAdmin):
    form = TaskForm
    live_page = ("tasks", "the tasks page")
    list_display = (
        "id", "name", "session", "status", "progress", "stop_asked", "updated", "live",
    )  # fmt: skip
    list_filter = ("status", "cancel_requested", "pause_requested")
    search_fields = ("name", "external_id", "session__name")
    list_select_related = ("session",)
    raw_id_fields = ("session",)
    readonly_fields = (
        "cancel_requested", "pause_requested", "attempt", "started_at", "finished_at",
    )  # fmt: skip
    actions = ["cancel", "pause", "resume", "retry"]

    @admin.display(description="stop asked", boolean=True, ordering="cancel_requested")
    def stop_asked(self, task: Task) -> bool:
        return task.cancel_requested

    @admin.display(description="updated", ordering="updated_at")
    def updated(self, task: Task) -> str:
        return precise(task.updated_at)

    def delete_model(self, request, obj):
        services.delete_tasks([obj.pk])

    def delete_queryset(self, request, queryset):
        services.delete_tasks(list(queryset.values_list("pk", flat=True)))

    @admin.action(description="Cancel the selected tasks", permissions=["act"])
    def cancel(self, request, queryset):
        by = request.user.get_username()
        changed = sum(services.cancel_task(task.pk, by=by)[1] for task in queryset)
        self.message_user(request, f"Cancelled or asked to stop {changed} task(s).")

    @admin.action(description="Pause the selected tasks that have not ended", permissions=["act"])
    def pause(self, request, queryset):
        by = request.user.get_username()
        paused = 0
        for task in queryset:
            if not (task.is_terminal or task.cancel_requested):
                paused += services.pause_task(task.pk, by=by)[1]
        self.message_user(request, f"Asked {paused} task(s) to pause.")

    @admin.action(description="Resume the selected paused tasks", permissions=["act"])
    def resume(self, request, queryset):
        by = request.user.get_username()
        resumed = sum(services.resume_task(task.pk, by=by)[1] for task in queryset)
        self.message_user(request, f"Resumed {resumed} task(s).")

    @admin.action(description="Retry the selected ended tasks (new attempt)", permissions=["act"])
    def retry(self, request, queryset):
        """As POST /tasks/<id>/retry: a recorded Celery task is sent again."""
        retried, sent = 0, 0
        for task in queryset:
            if not task.is_terminal:
                continue
            try:
                _, went = resend.retry(task.pk, by=request.user.get_username())
            except Refused as refused:
                self.message_user(request, f"Task {task.pk}: {refused.message}", messages.WARNING)
                continue
            retried += 1
            sent += bool(went and went["sent"])
        self.message_user(request, f"Retried {retried} task(s); {sent} sent to Celery again.")


@admin.register(Event)
class EventAdmin(NotLive, admin.ModelAdmin):
    live_page = ("dashboard", "the dashboard")
    list_display = ("id", "kind", "session_id", "task_id", "time")
    list_filter = ("kind",)
    search_fields = ("=session_id", "=task_id")

    @admin.display(description="time", ordering="ts")
    def time(self, event: Event) -> str:
        return precise(event.ts)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ("user", "name")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    form = ApiTokenForm
    list_display = ("prefix", "name", "user", "created_at", "last_used_at")
    search_fields = ("name", "user__username", "prefix")
    raw_id_fields = ("user",)

    def get_readonly_fields(self, request, obj=None):
        return ("user", "prefix", "created_at", "last_used_at") if obj else ()

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        token, plain = ApiToken.issue(form.cleaned_data["user"], name=form.cleaned_data["name"])
        obj.pk = token.pk
        self.message_user(
            request,
            f"New token (shown once, copy it now): {plain}",
            messages.WARNING,
        )


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    """Where alerts go; the last outcome of each, failures included."""

    list_display = (
        "url",
        "name",
        "active",
        "last_sent_at",
        "last_status",
        "failures",
        "last_error",
    )
    list_filter = ("active",)
    fields = ("url", "name", "active", "last_sent_at", "last_status", "failures",
              "last_failed_at", "last_error")  # fmt: skip
    readonly_fields = (
        "last_sent_at", "last_status", "failures", "last_failed_at", "last_error"
    )  # fmt: skip
