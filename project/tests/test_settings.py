"""Settings read from the environment: helpers that refuse bad values."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from project import env


def test_booleans_accept_the_usual_words_and_refuse_others(monkeypatch):
    for word, value in (("on", True), ("TRUE", True), ("1", True), ("off", False), ("0", False)):
        monkeypatch.setenv("X_FLAG", word)
        assert env.env_bool("X_FLAG") is value
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG"):
        env.env_bool("X_FLAG")


def test_numbers_and_lists(monkeypatch):
    monkeypatch.setenv("X_NUMBER", "12")
    assert env.env_int("X_NUMBER", 5) == 12
    monkeypatch.setenv("X_NUMBER", "twelve")
    with pytest.raises(ImproperlyConfigured, match="whole number"):
        env.env_int("X_NUMBER", 5)
    monkeypatch.setenv("X_NUMBER", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        env.env_int("X_NUMBER", 5, minimum=1)
    monkeypatch.setenv("X_HOSTS", " a.example , b.example,")
    assert env.env_list("X_HOSTS", []) == ["a.example", "b.example"]


def test_a_local_secret_key_is_made_once_and_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("DJANGO_SECRET_KEY", raising=False)
    path = tmp_path / ".secret_key"
    first = env.secret_key(path)
    assert len(first) > 40 and env.secret_key(path) == first
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    monkeypatch.setenv("DJANGO_SECRET_KEY", "from-env")
    assert env.secret_key(path) == "from-env"


def test_https_hardening_follows_its_own_switch_not_debug():
    import subprocess
    import sys

    probe = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'project.settings'; django.setup();"
        "from django.conf import settings as s;"
        "print(s.DEBUG, s.SESSION_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS)"
    )
    for https, expected in (("off", "False False False 0"), ("on", "False True True 31536000")):
        result = subprocess.run(
            [sys.executable, "-c", probe],
            env={**__import__("os").environ, "DJANGO_HTTPS": https, "DJANGO_DEBUG": "off"},
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert result.stdout.strip() == expected


def test_static_files_start_without_a_warning_before_collectstatic(settings, tmp_path):
    import warnings

    from project.middleware import StaticFiles

    settings.STATIC_ROOT = tmp_path / "not-collected-yet"

    async def inner(request):
        return None

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        files = StaticFiles(inner)
    assert "/static/switchboard/js/ui.js" in files.files or files.autorefresh


def test_the_api_docs_link_to_the_protocol_which_is_served_beside_them(client):
    schema = client.get("/api/v1/openapi.json").json()
    assert "[PROTOCOL.md](protocol.md)" in schema["info"]["description"]
    answer = client.get("/api/v1/protocol.md")  # relative to /api/v1/docs
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/markdown")
    assert "WebSocket" in answer.content.decode() and answer.content.decode().startswith("#")
    assert client.post("/api/v1/protocol.md").status_code == 405
