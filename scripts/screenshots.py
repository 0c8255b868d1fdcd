"""Takes the screenshots in docs/screenshots/ from a running demo.

    .venv/bin/python scripts/screenshots.py

Starts `manage.py demo` on a fresh SQLite database and a free port, lets the
demo jobs run for a while, then photographs every page in headless Chromium
(light and dark, desktop and phone). Only 127.0.0.1 is used.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def main() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tmp = tempfile.mkdtemp()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp}/demo.sqlite3"}
    env.pop("REDIS_URL", None)
    log = Path(tmp) / "demo.log"
    demo = subprocess.Popen(
        [sys.executable, "manage.py", "demo", f"127.0.0.1:{port}", "--pace", "3", "--jobs", "4"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        for _ in range(100):
            found = re.search(r"login\s+(\S+) / (\S+)", log.read_text())
            if found:
                break
            time.sleep(0.2)
        user, password = found.groups()
        token = re.search(r"token for scripts: (\S+)\)", log.read_text()).group(1)
        time.sleep(40)  # let the demo jobs make some history
        base = f"http://127.0.0.1:{port}"

        def find(words: str) -> str:
            request = urllib.request.Request(
                f"{base}/api/v1/sessions?q={words}", headers={"Authorization": f"Bearer {token}"}
            )
            with urllib.request.urlopen(request) as response:
                found = json.load(response)["results"]
            return found[-1]["id"] if found else "1"

        focus = find("answer")  # the demo's first job: an agent run
        evaluation = find("evaluation")
        OUT.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            shots = [
                ("dashboard", "/", "light", (1280, 800)),
                ("sessions", "/sessions/", "light", (1280, 800)),
                ("workspace", f"/sessions/{focus}/", "light", (1280, 900)),
                ("workspace-dark", f"/sessions/{focus}/", "dark", (1280, 900)),
                ("workspace-terminal", f"/sessions/{evaluation}/", "light", (1280, 900)),
                ("tasks", "/tasks/", "light", (1280, 800)),
                ("logs", f"/sessions/{focus}/logs/", "light", (1280, 900)),
                ("logs-dark", f"/sessions/{focus}/logs/?level=WARNING", "dark", (1280, 900)),
                ("phone-workspace", f"/sessions/{focus}/", "light", (390, 844)),
            ]
            for name, path, scheme, (width, height) in shots:
                context = browser.new_context(
                    viewport={"width": width, "height": height}, color_scheme=scheme
                )
                page = context.new_page()
                page.goto(f"{base}/admin/login/?next={path}")
                page.fill("#id_username", user)
                page.fill("#id_password", password)
                page.click("input[type=submit]")
                page.wait_for_load_state("networkidle")
                time.sleep(2)
                if name.startswith("workspace"):
                    rows = page.locator("#tasks tr")
                    chosen = rows.filter(has_text=re.compile("answer|eval: reasoning"))
                    (chosen if chosen.count() else rows).first.click()
                    time.sleep(2)
                page.screenshot(path=str(OUT / f"{name}.png"))
                print("wrote", OUT / f"{name}.png")
                context.close()
            browser.close()
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(10)
        except subprocess.TimeoutExpired:
            demo.kill()


if __name__ == "__main__":
    main()
