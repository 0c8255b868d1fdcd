from django.db import models
from django.db.models import Q
from django.utils import timezone


class Delivery(models.Model):
    """The outbox: one alert to POST to one webhook. Written in the transaction
    of the failure it announces, so it is there exactly when the failure is;
    `operations.outbox` posts it, with retries, from whichever process is up."""

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    # The receiver: a Webhook row, or a URL of SWITCHBOARD_WEBHOOKS named by
    # its SHA-256 (the URL may carry a secret; it stays in the environment).
    webhook = models.ForeignKey(
        "sessions_app.Webhook",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="deliveries",
    )
    url_key = models.CharField(max_length=64, blank=True, default="")
    target = models.CharField(max_length=600, help_text="The URL, redacted.")
    event = models.CharField(max_length=40, help_text="The alert, e.g. task.failed.")
    seq = models.BigIntegerField(help_text="The system.alert event's seq.")
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    # When a pending delivery may next be tried; while one is being tried,
    # the end of its lease (a process killed mid-try leaves it due then).
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # The token of the claim that holds the delivery now, "" when none does.
    claim = models.CharField(max_length=32, blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.CheckConstraint(
                condition=Q(webhook__isnull=False, url_key="")
                | (Q(webhook__isnull=True) & ~Q(url_key="")),
                name="delivery_one_receiver",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="delivery_due",
            ),
            models.Index(fields=["claim"], condition=~Q(claim=""), name="delivery_claim"),
            models.Index(fields=["status", "-id"], name="delivery_status"),
        ]

    def __str__(self) -> str:
        return f"{self.event} (seq {self.seq}) to {self.target}"
