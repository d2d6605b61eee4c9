#!/usr/bin/env python3
"""`make run`: mpass-guard in a real Envoy on loopback, with fresh demo keys.

- generates a fresh RSA demo key and HS256 client secret in build/demo/
  (nothing secret is committed; every run has new keys)
- renders build/demo/envoy.yaml from envoy/envoy.yaml, swapping only the
  inline JWKS line for the demo key set and the DEMO_SECRET line for the
  fresh client secret
- starts a demo upstream on 127.0.0.1:8080 that answers with the headers it
  received (readable JSON) and prints them
- starts Envoy (listener 127.0.0.1:10000, admin 127.0.0.1:9901)
- mints tokens with the CLI and prints ready-to-paste curl commands

Ctrl-C or SIGTERM stops Envoy (its whole process group) and the upstream.
`--smoke` sends the demo requests itself, prints the answers and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENVOY = REPO / ".venv" / "bin" / "envoy"
CLI = REPO / "target" / "release" / "mpass-guard"
WASM = REPO / "target" / "wasm32-wasip1" / "release" / "mpass_guard.wasm"
TEMPLATE = REPO / "envoy" / "envoy.yaml"
DEMO = REPO / "build" / "demo"
ISSUER = "https://mpass-proxy-test.csc.fi"
LISTENER, ADMIN, UPSTREAM = 10000, 9901, 8080
HOST = "127.0.0.1"


def die(msg: str) -> None:
    print(f"demo: {msg}", file=sys.stderr)
    sys.exit(1)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
            return True
        except OSError:
            return False


def cli(*args: str) -> str:
    r = subprocess.run([str(CLI), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        die(f"mpass-guard {args[0]} failed: {r.stderr.strip()}")
    return r.stdout.strip()


# -- demo upstream -----------------------------------------------------------


def decoded(name: str, value: str):
    """How an upstream reads an mpass-guard header back (docs/contracts.md)."""
    if not name.lower().startswith("x-mpass-"):
        return None
    if value.startswith("["):
        return json.loads(value)
    return urllib.parse.unquote(value)


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        seen = {
            "method": self.command,
            "path": self.path,
            "headers": list(self.headers.items()),
            "mpass_guard_decoded": {k: decoded(k, v) for k, v in self.headers.items()
                                    if decoded(k, v) is not None},
        }
        body = (json.dumps(seen, indent=2) + "\n").encode()
        print(f"\n[upstream] {self.command} {self.path}")
        for k, v in self.headers.items():
            d = decoded(k, v)
            readable = json.dumps(d, ensure_ascii=False) if isinstance(d, list) else d
            differs = d is not None and (readable != v if isinstance(d, str) else readable != json.dumps(d))
            shown = f"{v}    (decoded: {readable})" if differs else v
            print(f"[upstream]   {k}: {shown}")
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    def log_message(self, *a) -> None:
        pass


# -- main --------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="send the demo requests, print answers, exit")
    args = ap.parse_args()

    for path, hint in ((ENVOY, "make setup"), (CLI, "make build"), (WASM, "make build")):
        if not path.is_file():
            die(f"{path} is missing: run `{hint}`")
    for port in (LISTENER, ADMIN, UPSTREAM):
        if not port_free(port):
            die(f"127.0.0.1:{port} is in use; stop whatever holds it (another `make run`?)")

    # Fresh demo keys every run. DEMO ONLY: never trust these anywhere else.
    DEMO.mkdir(parents=True, exist_ok=True)
    key = DEMO / "demo-rs256.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", str(key)], check=True, capture_output=True)
    key.chmod(0o600)
    hs_secret = secrets.token_urlsafe(32)
    keyset = cli("jwks", "--key", str(key), "--kid", "demo-rs256", "--alg", "RS256")

    template = TEMPLATE.read_text()
    config, n = re.subn(r'("inline_string":\s*).*$', lambda m: m.group(1) + json.dumps(keyset),
                        template, count=1, flags=re.M)
    if n != 1:
        die(f"no inline_string line found in {TEMPLATE}")
    config, n = re.subn(r'^(\s*STUDEO_CLIENT_SECRET:\s*).*#\s*DEMO_SECRET\s*$',
                        lambda m: m.group(1) + json.dumps(hs_secret), config, count=1, flags=re.M)
    if n != 1:
        die(f"no STUDEO_CLIENT_SECRET line marked DEMO_SECRET found in {TEMPLATE}")
    config_path = DEMO / "envoy.yaml"
    config_path.write_text(config)

    upstream = ThreadingHTTPServer((HOST, UPSTREAM), Echo)
    upstream.daemon_threads = True
    threading.Thread(target=upstream.serve_forever, daemon=True).start()

    log_path = DEMO / "envoy.log"
    log = open(log_path, "wb")
    envoy = subprocess.Popen(
        [str(ENVOY), "-c", str(config_path), "--concurrency", "1", "--disable-hot-restart",
         "--log-level", "info"],
        cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "STUDEO_CLIENT_SECRET": hs_secret}, start_new_session=True,
    )
    log.close()

    stopping = threading.Event()

    def stop(*_a) -> None:
        if stopping.is_set():
            return
        stopping.set()
        if envoy.poll() is None:
            try:
                os.killpg(envoy.pid, signal.SIGTERM)
                envoy.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(envoy.pid, signal.SIGKILL)
                envoy.wait(5)
            except ProcessLookupError:
                pass
        upstream.shutdown()
        upstream.server_close()

    def on_signal(signum, _frame) -> None:
        stop()
        print("\ndemo: stopped Envoy and the upstream")
        sys.exit(0)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    try:
        deadline = time.monotonic() + 30
        while True:
            if envoy.poll() is not None:
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
                die(f"Envoy exited ({envoy.returncode}); log {log_path}:\n{tail}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{ADMIN}/ready", timeout=1) as r:
                    if r.read().strip() == b"LIVE":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                die(f"Envoy not ready after 30s; see {log_path}")
            time.sleep(0.1)

        claims_dir = REPO / "tests" / "fixtures" / "claims"
        base = ["--key", str(key), "--kid", "demo-rs256", "--alg", "RS256", "--set", f"iss={ISSUER}"]

        def person(fixture: str, *extra: str) -> str:
            return cli("mint", *base, "--claims", str(claims_dir / fixture), *extra)

        learner = person("learner-1.4.json", "--set", "aud=studeo-webshop")
        staff = person("staff-with-email-proposed.json", "--set", "aud=studeo-webshop")
        teacher = person("teacher-two-providers-1.4.json", "--set", "aud=studeo-webshop")
        test_learner = person("test-learner-number.json", "--set", "aud=studeo-webshop")
        expired = person("learner-1.4.json", "--set", "aud=studeo-webshop", "--exp-in", "-3600",
                         "--iat-offset", "-7200")
        wrong_aud = person("learner-1.4.json", "--set", "aud=some-other-service")
        library = person("learner-1.4.json", "--set", "aud=library-app")
        hs = cli("mint", "--key", f"hmac:{hs_secret}", "--alg", "HS256", "--claims",
                 str(claims_dir / "learner-1.4.json"), "--set", f"iss={ISSUER}",
                 "--set", "aud=studeo-webshop")

        url = f"http://{HOST}:{LISTENER}"
        demos = [
            ("a learner at the web shop -> 200; uid, names, role, school; no token, no e-mail, "
             "no learner number", "/shop/basket", [("Authorization", f"Bearer {learner}")]),
            ("a staff member at the web shop -> 200; e-mail released (contract: staff only)",
             "/shop/checkout", [("Authorization", f"Bearer {staff}")]),
            ("a teacher of two municipalities -> 200; only the permitted municipality's role and "
             "school (Öhman, Pekka-Äijö percent-encoded)",
             "/shop/basket", [("Authorization", f"Bearer {teacher}")]),
            ("a test learner number -> 403 {\"error\":\"contract_violation\","
             "\"reason\":\"test_identity_not_allowed\"}",
             "/shop/basket", [("Authorization", f"Bearer {test_learner}")]),
            ("HS256 ID token signed with the client secret -> 200", "/shop/basket",
             [("Authorization", f"Bearer {hs}")]),
            ("token in a cookie -> 200, only the id_token cookie is removed",
             "/shop/basket", [("Cookie", f"theme=dark; id_token={learner}")]),
            ("token in the query -> 200, only id_token is removed",
             f"/shop/basket?page=2&id_token={learner}", []),
            ("no token -> 401, WWW-Authenticate: Bearer realm=\"mpass-guard\"", "/shop/basket", []),
            ("expired -> 401 {\"error\":\"invalid_token\",\"reason\":\"expired\"}",
             "/shop/basket", [("Authorization", f"Bearer {expired}")]),
            ("wrong audience -> 403 {\"error\":\"forbidden\",\"reason\":\"audience_mismatch\"}",
             "/shop/basket", [("Authorization", f"Bearer {wrong_aud}")]),
            ("route matched by name (library-route) -> 200; uid and TK-coded school only",
             "/library/loans", [("Authorization", f"Bearer {library}")]),
            ("no provider matches -> 200 pass-through; spoofed X-Mpass-Uid is stripped",
             "/public/info", [("X-Mpass-Uid", "spoofed"), ("X_Mpass_Role", "spoofed")]),
        ]

        print(f"\nmpass-guard demo: Envoy on {url} (admin http://{HOST}:{ADMIN}), "
              f"upstream on http://{HOST}:{UPSTREAM}")
        print(f"config {config_path}, Envoy log {log_path}; demo keys are fresh and DEMO ONLY\n")
        for title, path, headers in demos:
            hdrs = " ".join(f"-H '{k}: {v}'" for k, v in headers)
            print(f"# {title}\ncurl -i {hdrs} '{url}{path}'\n".replace("  ", " "))

        if args.smoke:
            import http.client
            failures = 0
            for title, path, headers in demos:
                conn = http.client.HTTPConnection(HOST, LISTENER, timeout=10)
                conn.putrequest("GET", path)
                for k, v in headers:
                    conn.putheader(k, v)
                conn.endheaders()
                r = conn.getresponse()
                r.read()
                conn.close()
                expected = int(re.search(r"-> (\d{3})", title).group(1))
                ok = r.status == expected
                failures += not ok
                print(f"smoke: {'ok  ' if ok else 'FAIL'} {r.status}  {title}")
            return 1 if failures else 0

        print("Ctrl-C to stop.")
        while envoy.poll() is None:
            time.sleep(0.5)
        die(f"Envoy exited ({envoy.returncode}); see {log_path}")
    finally:
        stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
