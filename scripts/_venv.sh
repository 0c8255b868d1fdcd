# Sourced by scripts/run and scripts/test: makes .venv and installs the
# pinned requirements once (again only when requirements/ changes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $("$python" --version)…" >&2
  "$python" -m venv .venv
fi
stamp=".venv/.installed-$(cat requirements/*.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "Installing requirements/dev.txt…" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
  touch "$stamp"
fi
