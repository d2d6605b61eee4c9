#!/usr/bin/env python3
"""`make run DEMO=login` (or `make run-login`): the legacy-app login demo.

Starts, on loopback, the login OP (tests/interop/login_op.mjs: MPASSid-shaped
demo users, attributes at userinfo only), a legacy app that renders the
headers it received, and Envoy from the shipped envoy/legacy-app.yaml (oauth2
filter, then mpass-guard with userinfo), and prints the one URL to open in a
browser, the demo users and what each should see. Ctrl-C stops everything.

Ports (environment variables; a busy port stops the demo with its name):
  LOGIN_DEMO_PORT        the URL to open            (default 10080)
  LOGIN_DEMO_OP_PORT     the login OP               (default 10090)
  LOGIN_DEMO_APP_PORT    the legacy app             (default 8081)
  LOGIN_DEMO_ADMIN_PORT  Envoy's admin interface    (default 9902)
  LOGIN_DEMO_ID_TOKEN_TTL  ID-token lifetime in seconds (default 300: expiry is
                           easy to try; the browser goes through login and back)
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import harness  # noqa: E402
from legacy import CONTRACTED, SIGNOUT, USERS, LegacyStack  # noqa: E402

PORTS = {
    "LOGIN_DEMO_PORT": 10080,
    "LOGIN_DEMO_OP_PORT": 10090,
    "LOGIN_DEMO_APP_PORT": 8081,
    "LOGIN_DEMO_ADMIN_PORT": 9902,
}


def port(name: str) -> int:
    raw = os.environ.get(name, str(PORTS[name]))
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        sys.exit(f"demo: {name}={raw!r} is not a port")
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", int(raw)))
        except OSError:
            sys.exit(f"demo: port {raw} is busy: set {name} to a free port")
    return int(raw)


def main() -> int:
    ports = {name: port(name) for name in PORTS}
    ttl = int(os.environ.get("LOGIN_DEMO_ID_TOKEN_TTL", "300"))
    workdir = REPO / "build" / "demo-login"
    stack = LegacyStack(workdir, id_token_ttl=ttl, listener=ports["LOGIN_DEMO_PORT"],
                        admin=ports["LOGIN_DEMO_ADMIN_PORT"], op_port=ports["LOGIN_DEMO_OP_PORT"],
                        app_port=ports["LOGIN_DEMO_APP_PORT"])
    try:
        stack.start()
    except (harness.Missing, RuntimeError) as e:
        stack.stop()
        sys.exit(f"demo: {e}")
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    print(f"""
mpass-guard login demo: open this URL in a browser

    {stack.base}/

Envoy (envoy/legacy-app.yaml) sends you to the login OP at {stack.op.issuer}; log in
with one of these names (any password), consent, and you land on the legacy app:
""")
    for user, what in USERS.items():
        print(f"    {user:<9} {what}")
    print(f"""
The app page lists what it received: only {', '.join(sorted(CONTRACTED))};
no token, no session cookie. {stack.base}{SIGNOUT} signs out. The ID token lives
{ttl} s (LOGIN_DEMO_ID_TOKEN_TTL): after that the next page goes through the OP and back.
Envoy log {stack.envoy.log_path}, OP log {stack.op.log}. Ctrl-C to stop.
""", flush=True)
    try:
        while not done.wait(1):
            if stack.envoy.proc is None or stack.envoy.proc.poll() is not None:
                print(f"demo: Envoy exited\n{stack.envoy.log_tail()}", file=sys.stderr)
                return 1
    finally:
        stack.stop()
        print("demo: stopped Envoy, the OP and the app")
    return 0


if __name__ == "__main__":
    sys.exit(main())
