"""The login page (the admin's) lets in everyone who may use the pages."""

from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from live.auth import browser_user


class BrowserLoginForm(AuthenticationForm):
    """Staff, and the users a feature admits to the pages (viewers and
    operators). The admin's own pages still want staff (AdminSite.has_permission)."""

    def confirm_login_allowed(self, user) -> None:
        super().confirm_login_allowed(user)
        if not browser_user(user):
            # As the admin's own form answers a non-staff user: nothing learned.
            raise ValidationError(
                self.error_messages["invalid_login"],
                code="invalid_login",
                params={"username": self.username_field.verbose_name},
            )
