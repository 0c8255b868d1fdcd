from django.contrib import admin
from django.templatetags.static import static
from django.urls import path
from django.views.generic import RedirectView

from logs_app import views as log_views
from operations import health
from project import docs
from project.api import api
from project.login import BrowserLoginForm
from sessions_app import views

admin.site.site_header = "Switchboard administration"
admin.site.site_title = "Switchboard"
admin.site.index_title = "Sessions, tasks, tokens and webhooks"
admin.site.login_form = BrowserLoginForm

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("sessions/", views.sessions, name="sessions"),
    path("sessions/<int:session_id>/", views.workspace, name="workspace"),
    path("sessions/<int:session_id>/logs/", log_views.viewer, name="logs"),
    path("sessions/<int:session_id>/logs/download", log_views.download, name="logs-download"),
    path("tasks/", views.tasks, name="tasks"),
    path("admin/", admin.site.urls),
    path("api/v1/protocol.md", docs.protocol, name="protocol"),
    path("api/v1/", api.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
    path("favicon.ico", RedirectView.as_view(url=static("switchboard/favicon.svg"))),
]
