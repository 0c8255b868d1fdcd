#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys
from pathlib import Path


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    try:
        from django.core.management import execute_from_command_line
    except ImportError:
        # Run with a Python that lacks the requirements (`python3 manage.py …`
        # outside the virtual environment): use the project's own, if it has one.
        venv = Path(__file__).resolve().parent / ".venv" / "bin" / "python"
        if venv.exists() and Path(sys.prefix).resolve() != venv.parent.parent.resolve():
            os.execv(venv, [str(venv), *sys.argv])
        sys.exit(
            "Django is not installed for this Python. Run scripts/run once (it makes .venv), "
            "then .venv/bin/python manage.py …"
        )
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
