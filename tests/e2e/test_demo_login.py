"""`make run DEMO=login` (scripts/demo_login.py): on the ports the environment
names, it prints one URL, the demo users and what each should see; the URL
starts the login at the OP; Ctrl-C (SIGTERM here) stops everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import harness


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_the_login_demo_prints_one_url_and_the_users_and_the_url_starts_the_login(tmp_path):
    ports = {name: str(harness._ephemeral_port()) for name in (
        "LOGIN_DEMO_PORT", "LOGIN_DEMO_OP_PORT", "LOGIN_DEMO_APP_PORT", "LOGIN_DEMO_ADMIN_PORT")}
    proc = subprocess.Popen([sys.executable, str(harness.REPO / "scripts" / "demo_login.py")],
                            cwd=harness.REPO, env={**os.environ, **ports}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C to stop" in line:
                break
        text = "".join(lines)
        url = f"http://127.0.0.1:{ports['LOGIN_DEMO_PORT']}/"
        assert url in text, text
        for user in ("learner", "teacher", "outsider"):
            assert user in text
        opener = urllib.request.build_opener(_NoRedirect())
        try:
            opener.open(url, timeout=10)
            raise AssertionError("expected the redirect to the OP")
        except urllib.error.HTTPError as e:
            assert e.code == 302
            assert e.headers["location"].startswith(
                f"http://localhost:{ports['LOGIN_DEMO_OP_PORT']}/auth?")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "stopped Envoy, the OP and the app" in out


def test_a_busy_port_stops_the_login_demo_naming_the_variable():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = str(s.getsockname()[1])
        r = subprocess.run([sys.executable, str(harness.REPO / "scripts" / "demo_login.py")],
                           cwd=harness.REPO, env={**os.environ, "LOGIN_DEMO_PORT": busy},
                           capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "LOGIN_DEMO_PORT" in r.stderr
