"""The migrations say what the models say: one leaf per app, and nothing
left for `makemigrations` to write."""

import io

import pytest
from django.core.management import call_command


def test_the_models_have_no_change_without_its_migration(db):
    out = io.StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out)
    except SystemExit as exit:
        pytest.fail(f"models changed without a migration ({exit.code}):\n{out.getvalue()}")
    assert "No changes detected" in out.getvalue()
