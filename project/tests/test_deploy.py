"""The deploy kit (deploy/): the nginx site in front of two real daphne
processes on PostgreSQL and Redis, its syntax, and the environment file."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher, make_password
from django.db import connection

from conftest import ROOT, Listening, free_port
from live.tests.concurrent_resume import check_resume_with_concurrent_writers

pytestmark = pytest.mark.timeout(240)

NGINX = "/usr/sbin/nginx"
DEPLOY = ROOT / "deploy"
SITE = DEPLOY / "nginx" / "switchboard.conf"
SUBPATH_SITE = DEPLOY / "nginx" / "switchboard-subpath.conf"


def nginx_binary() -> str:
    """Debian's nginx; CI installs it (.ci/run), so there it must be present."""
    if os.access(NGINX, os.X_OK):
        return NGINX
    if os.environ.get("CI"):
        pytest.fail(f"{NGINX} is needed to check deploy/nginx (apt-get install nginx)")
    pytest.skip(f"{NGINX} is not installed (apt-get install nginx)")


def render_site(upstreams: list[int], listen: int, path: Path = SITE) -> str:
    """deploy/nginx/switchboard.conf (or `path`) as shipped, with this test's
    ports: its upstream servers become `upstreams` (with the shipped parameters,
    max_fails and the like), its listen lines one on 127.0.0.1."""
    site = path.read_text()
    servers = re.findall(r"^[ \t]*server 127\.0\.0\.1:\d+([^;]*);\n", site, re.M)
    lines = re.findall(r"^[ \t]*server 127\.0\.0\.1:\d+[^;]*;\n", site, re.M)
    listens = re.findall(r"^[ \t]*listen [^;]+;\n", site, re.M)
    assert servers and listens, "the site lists its processes and where it listens"
    assert len(set(servers)) == 1, "every process has the same upstream parameters"
    site = site.replace(
        lines[0], "".join(f"    server 127.0.0.1:{port}{servers[0]};\n" for port in upstreams), 1
    )
    servers = lines
    site = site.replace(listens[0], f"    listen 127.0.0.1:{listen};\n", 1)
    for line in servers[1:] + listens[1:]:
        site = site.replace(line, "", 1)
    return site


class Nginx(Listening):
    """/usr/sbin/nginx in the foreground, with the site included in a minimal
    nginx.conf whose pid, logs and temporary files stay in a folder of its own."""

    def __init__(self, upstreams: list[int], edit=lambda site: site, path: Path = SITE) -> None:
        self.port = free_port()
        site = edit(render_site(upstreams, self.port, path))
        self.folder = Path(tempfile.mkdtemp(prefix="switchboard-nginx-"))
        self.folder.chmod(0o755)  # workers run as nobody when started by root
        (self.folder / "switchboard.conf").write_text(site)
        temp = "\n".join(
            f"    {kind}_temp_path {self.folder}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        self.conf = self.folder / "nginx.conf"
        self.conf.write_text(
            f"daemon off;\n"
            f"worker_processes 1;\n"
            f"pid {self.folder}/nginx.pid;\n"
            f"error_log {self.folder}/error.log warn;\n"
            f"events {{ worker_connections 512; }}\n"
            f"http {{\n"
            f"    log_format upstreams '$request_method $uri $status $upstream_addr';\n"
            f"    access_log {self.folder}/access.log upstreams;\n"
            f"{temp}\n"
            f"    include {self.folder}/switchboard.conf;\n"
            f"}}\n"
        )
        self.process: subprocess.Popen | None = None

    def command(self, *extra: str) -> list[str]:
        return [nginx_binary(), "-p", str(self.folder), "-c", str(self.conf),
                "-e", str(self.folder / "error.log"), *extra]  # fmt: skip

    def check(self) -> subprocess.CompletedProcess:
        """`nginx -t`: the syntax, and that every file it names can be opened."""
        return subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30)

    def start(self) -> "Nginx":
        # A session of its own: a stop that has to kill takes the workers too.
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.errors()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not listen within 10 s: {self.errors()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()  # nginx's fast shutdown, workers included
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        shutil.rmtree(self.folder, ignore_errors=True)

    def errors(self) -> str:
        log = self.folder / "error.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def access(self, settle: float = 5.0) -> list[list[str]]:
        """The access log's lines, split; a socket's line is written when it
        closes, so wait until the log stops growing."""
        log = self.folder / "access.log"
        lines, deadline = None, time.monotonic() + settle
        while time.monotonic() < deadline:
            now = log.read_text().splitlines()
            if now == lines:
                break
            lines = now
            time.sleep(0.3)
        return [line.split() for line in lines or []]


def postgres_and_redis() -> bool:
    return connection.vendor == "postgresql" and bool(settings.REDIS_URL)


@pytest.fixture
def behind_nginx(fresh_server):
    """Two daphne processes on PostgreSQL and Redis, behind the shipped site."""
    if not postgres_and_redis():
        pytest.skip("several processes behind one address need PostgreSQL and Redis")
    nginx_binary()
    servers = [fresh_server(), fresh_server()]
    nginx = Nginx([s.port for s in servers])
    checked = nginx.check()
    assert checked.returncode == 0, checked.stderr
    nginx.start()
    yield nginx, servers
    nginx.stop()


def size_in_bytes(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", value).groups()
    return int(number) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit.lower()]


def directive(text: str, name: str) -> str:
    found = re.findall(rf"^[ \t]*{name}[ \t]+([^;]+);", text, re.M)
    assert len(found) == 1, (name, found)
    return found[0]


def location(site: str, pattern: str) -> str:
    match = re.search(rf"^[ \t]*location {pattern} \{{\n(.*?)^[ \t]*\}}", site, re.M | re.S)
    assert match, pattern
    return match.group(1)


# --- the files themselves (any configuration) ----------------------------------------


def test_the_site_passes_nginx_t_and_a_broken_one_does_not():
    nginx = Nginx([free_port(), free_port()])
    try:
        checked = nginx.check()
        assert checked.returncode == 0, checked.stderr
        assert "syntax is ok" in checked.stderr
        broken = Nginx(
            [free_port(), free_port()],
            lambda site: site.replace("proxy_buffering off;", "proxy_buffering off"),
        )
        try:
            assert broken.check().returncode != 0
        finally:
            broken.stop()
    finally:
        nginx.stop()


def test_the_site_agrees_with_the_settings():
    site = SITE.read_text()
    body = size_in_bytes(directive(site, "client_max_body_size"))
    assert body == settings.DATA_UPLOAD_MAX_MEMORY_SIZE, "SWITCHBOARD_MAX_BODY_BYTES"
    sockets = location(site, "/ws/")
    assert "proxy_set_header Upgrade $http_upgrade;" in sockets
    assert 'proxy_set_header Connection "upgrade";' in sockets
    idle = settings.SWITCHBOARD["IDLE_TIMEOUT"]
    for name in ("proxy_read_timeout", "proxy_send_timeout"):
        seconds = int(directive(sockets, name).removesuffix("s"))
        assert seconds > max(idle, 30), f"{name} must outlast the server's idle timeout"
    download = location(site, r"~ \^/sessions/\[0-9\]\+/logs/download\$")
    assert "proxy_buffering off;" in download


def test_the_environment_example_names_only_settings_that_exist():
    names = re.findall(r"^([A-Z_]+)=", (DEPLOY / "switchboard.env.example").read_text(), re.M)
    read = "".join((ROOT / "project" / name).read_text() for name in ("settings.py", "env.py"))
    assert {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS"} <= set(names)
    assert [name for name in names if f'"{name}"' not in read] == []


def test_the_unit_serves_its_port_behind_the_proxy():
    unit = (DEPLOY / "systemd" / "switchboard@.service").read_text()
    start = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1).split()
    assert start[0].endswith("/daphne") and start[-1] == "project.asgi:application"
    assert "--proxy-headers" in start
    assert start[start.index("--port") + 1] == "%i"
    assert start[start.index("--bind") + 1] == "127.0.0.1"
    assert "WantedBy=switchboard.target" in unit
    assert "EnvironmentFile=" in unit


# --- through nginx (PostgreSQL and Redis) ---------------------------------------------


async def test_resume_with_concurrent_writers_through_nginx(behind_nginx, admin_token):
    """Writers over HTTP and subscribers that drop and resume, all through
    nginx, spread over both processes: every subscriber gets every committed
    event once, in order."""
    nginx, servers = behind_nginx
    await check_resume_with_concurrent_writers(
        [nginx.url], [nginx.ws_url], admin_token,
        tasks=6, steps=40, subscribers=4, drops=3, events_per_drop=40,
    )  # fmt: skip
    lines = nginx.access()
    both = {f"127.0.0.1:{s.port}" for s in servers}
    upgrades = {line[3] for line in lines if line[:3] == ["GET", "/ws/", "101"]}
    writes = {line[3] for line in lines if line[0] == "PATCH" and line[2] == "200"}
    assert upgrades == both, "sockets on both processes"
    assert writes == both, "writes through both processes"
    assert not [line for line in lines if line[2].startswith("5")], "no 5xx through nginx"


def test_pages_static_files_login_download_and_limits_through_nginx(
    behind_nginx, admin_user, admin_token
):
    nginx, _ = behind_nginx
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar := CookieJar()))

    def fetch(path: str, data: bytes | None = None, headers=None, method=None):
        request = urllib.request.Request(
            f"{nginx.url}{path}", data=data, headers=headers or {}, method=method
        )
        try:
            with browser.open(request, timeout=30) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()

    static = ROOT / "static" / "switchboard" / "favicon.svg"
    status, _, body = fetch("/static/switchboard/favicon.svg")
    assert (status, body) == (200, static.read_bytes())
    assert fetch("/healthz")[0] == 200 and fetch("/readyz")[0] == 200

    # A form login: the Host nginx passes on (with its port) is the page's origin.
    # (The servers know the default hashers, not the tests' fast one.)
    admin_user.password = make_password("pw", hasher=PBKDF2PasswordHasher())
    admin_user.save(update_fields=["password"])
    status, _, page = fetch("/admin/login/")
    assert status == 200
    csrf = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
    form = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": csrf, "username": "admin", "password": "pw", "next": "/"}
    ).encode()
    status, _, _ = fetch("/admin/login/", form, {"Origin": nginx.url, "Referer": nginx.url})
    assert status == 200 and any(c.name == "sessionid" for c in jar), "logged in, then /"

    # The log download streams through.
    from switchboard_client import Client

    api = Client(nginx.url, admin_token, timeout=30)
    session = api.create_session("download")
    api.log(session["id"], [{"message": f"line {n}"} for n in range(3000)])
    status, headers, body = fetch(f"/sessions/{session['id']}/logs/download")
    assert status == 200 and headers["Content-Disposition"].endswith(f'-{session["id"]}.log"')
    assert body.decode().count("\n") == 3000 and body.decode().rstrip().endswith("line 2999")

    # A body past SWITCHBOARD_MAX_BODY_BYTES is refused by nginx, at once.
    too_big = b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    status, _, _ = fetch(
        f"/api/v1/sessions/{session['id']}/logs", too_big,
        {"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"},
    )  # fmt: skip
    assert status == 413
