"""Changes made outside the services (an admin form, an ORM save in a shell)
become events too. Service functions record their own events and mark the
write (recording.in_service), so nothing is published twice.
"""

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_delete
from django.dispatch import receiver

from live import events
from sessions_app import channels, recording
from sessions_app.models import Session, Task


@receiver(post_save, sender=Session)
def session_saved(sender, instance: Session, raw: bool = False, **kwargs) -> None:
    if raw or recording.in_service():
        return
    with recording.service_write():
        recording.record_session(instance)


@receiver(post_save, sender=Task)
def task_saved(sender, instance: Task, raw: bool = False, **kwargs) -> None:
    if raw or recording.in_service():
        return
    with recording.service_write():
        session = Session.objects.select_for_update(no_key=True).get(pk=instance.session_id)
        if session.refresh_counts():
            session.save(update_fields=list(Session.COUNTS))
            recording.record_session(session)
        recording.record_task(instance)
        recording.record_progress(instance, session)


@receiver(post_delete, sender=Task)
def task_deleted(sender, instance: Task, origin=None, **kwargs) -> None:
    if isinstance(origin, Session) or getattr(origin, "model", None) is Session:
        # The whole session goes: session_deleted tells the session's and the
        # shared channels; the task's own channel ends with this.
        with transaction.atomic():
            events.record(
                "task.deleted",
                [channels.task(instance.pk)],
                session_id=instance.session_id,
                task_id=instance.pk,
                data={"id": str(instance.pk), "session_id": str(instance.session_id)},
                # The session's row goes after its tasks': still there to ask.
                extras={"owner_id": recording.owner_of(instance.session_id)},
            )
        return
    with recording.service_write():
        session = (
            Session.objects.select_for_update(no_key=True).filter(pk=instance.session_id).first()
        )
        events.record(
            "task.deleted",
            recording.task_channels(instance),
            session_id=instance.session_id,
            task_id=instance.pk,
            data={"id": str(instance.pk), "session_id": str(instance.session_id)},
            extras={"owner_id": session.owner_id if session else None},
        )
        if session is not None and session.refresh_counts():
            session.save(update_fields=list(Session.COUNTS))
            recording.record_session(session)


@receiver(post_delete, sender=Session)
def session_deleted(sender, instance: Session, **kwargs) -> None:
    with transaction.atomic():
        # On `tasks` too: the tasks page drops the session's tasks.
        events.record(
            "session.deleted",
            [*channels.of_session(instance.pk), channels.TASKS],
            session_id=instance.pk,
            data={"id": str(instance.pk), "session_id": str(instance.pk)},
            extras={"owner_id": instance.owner_id},
        )


@receiver(pre_delete, sender=settings.AUTH_USER_MODEL)
def owner_deleted(sender, instance, **kwargs) -> None:
    """A deleted user's sessions stay, ownerless. Ownerless sessions share one
    namespace of external ids, so one of theirs that another ownerless
    session has already is kept with its session's id after it (`key~42`)."""
    taken = Session.objects.filter(owner__isnull=True, external_id__isnull=False)
    clashing = Session.objects.filter(
        owner=instance, external_id__in=taken.values("external_id")
    ).only("pk", "external_id")
    for session in clashing:
        suffix = f"~{session.pk}"
        session.external_id = session.external_id[: 200 - len(suffix)] + suffix
        session.save(update_fields=["external_id"])
