"""Questions in the admin: the open ones to answer (a form with the answer,
or the default for many at once), the others as they were answered. An
answer goes through sessions_app.questions, as from the pages: once, with
its event, by the acting user."""

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

from live.errors import Refused
from sessions_app import questions
from sessions_app.admin_parts import Acts, NotLive, precise
from sessions_app.models import Question


class AnswerForm(forms.ModelForm):
    class Meta:
        model = Question
        fields = ("answer",)

    def clean_answer(self):
        answer = self.cleaned_data["answer"]
        try:
            questions.check_answer(answer, self.instance.choices)
        except Refused as error:
            raise forms.ValidationError(error.message) from None
        return answer


@admin.register(Question)
class QuestionAdmin(Acts, NotLive, admin.ModelAdmin):
    form = AnswerForm
    live_page = ("tasks", "the tasks page")
    list_display = (
        "id",
        "short_prompt",
        "task",
        "status",
        "answer",
        "answered_by",
        "asked",
        "live",
    )
    list_filter = ("status",)
    search_fields = ("prompt", "answer", "task__name")
    list_select_related = ("task__session", "answered_by")
    readonly_fields = (
        "task", "prompt", "choices", "default", "status", "answered_by",
        "asked_at", "expires_at", "answered_at",
    )  # fmt: skip
    actions = ["answer_with_default"]

    @admin.display(description="prompt", ordering="prompt")
    def short_prompt(self, question: Question) -> str:
        return question.prompt if len(question.prompt) <= 80 else question.prompt[:79] + "…"

    @admin.display(description="asked", ordering="asked_at")
    def asked(self, question: Question) -> str:
        return precise(question.asked_at)

    @admin.display(description="live page")
    def live(self, question: Question):
        return format_html('<a href="{}">watch</a>', question.task.get_absolute_url())

    def has_add_permission(self, request):
        return False  # a job asks, through the API

    def has_delete_permission(self, request, obj=None):
        return False  # it goes with its task

    def has_change_permission(self, request, obj=None):
        """Answering is acting: an open question, for those who act on every session."""
        if obj is not None and obj.status != Question.OPEN:
            return False
        return self.has_act_permission(request)

    def save_model(self, request, obj, form, change):
        try:
            questions.answer(obj.pk, form.cleaned_data["answer"], request.user)
        except Refused as error:
            self.message_user(request, f"Not answered: {error.message}", messages.ERROR)

    @admin.action(
        description="Answer the selected open questions with their default", permissions=["act"]
    )
    def answer_with_default(self, request, queryset):
        answered = skipped = 0
        for question in queryset.filter(status=Question.OPEN):
            if question.default is None:
                skipped += 1
                continue
            try:
                questions.answer(question.pk, question.default, request.user)
                answered += 1
            except Refused:
                skipped += 1  # answered meanwhile
        self.message_user(request, f"Answered {answered} question(s); {skipped} left as they were.")
