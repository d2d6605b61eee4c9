#!/usr/bin/env python3
"""`make run`: mpass-guard in a real Envoy on loopback, with fresh demo keys.

- generates a fresh RSA demo key and HS256 client secret in build/demo/
  (nothing secret is committed; every run has new keys)
- renders build/demo/envoy.yaml from envoy/envoy.yaml, swapping only the
  inline JWKS line for the demo key set
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


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        seen = {"method": self.command, "path": self.path, "headers": list(self.headers.items())}
        body = (json.dumps(seen, indent=2) + "\n").encode()
        print(f"\n[upstream] {self.command} {self.path}")
        for k, v in self.headers.items():
            print(f"[upstream]   {k}: {v}")
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

        base = ["--key", str(key), "--kid", "demo-rs256", "--alg", "RS256", "--set", f"iss={ISSUER}",
                "--set", "sub=demo-pairwise-subject", "--set", "urn:mpass.id:uid=MPASSOID.demo-user"]
        good = cli("mint", *base, "--set", "aud=studeo-webshop")
        expired = cli("mint", *base, "--set", "aud=studeo-webshop", "--exp-in", "-3600",
                      "--iat-offset", "-7200")
        wrong_aud = cli("mint", *base, "--set", "aud=some-other-service")
        library = cli("mint", *base, "--set", "aud=library-app")
        hs = cli("mint", "--key", f"hmac:{hs_secret}", "--alg", "HS256", "--set", f"iss={ISSUER}",
                 "--set", "aud=studeo-webshop", "--set", "sub=demo-pairwise-subject")
        teacher = cli("mint", *base, "--set", "aud=studeo-webshop",
                      "--set", "email=opettaja@koulu.example.fi",
                      "--set", 'urn:mpass.id:role=["1.2.246.562.10.1;00001;7A;Opettaja;2;1.2.246.562.10.2;"]')

        url = f"http://{HOST}:{LISTENER}"
        demos = [
            ("valid RS256 ID token -> 200, upstream sees no Authorization header",
             f"/shop/basket", [("Authorization", f"Bearer {good}")]),
            ("valid HS256 token (client secret) -> 200", "/shop/basket", [("Authorization", f"Bearer {hs}")]),
            ("token in a cookie -> 200, only the id_token cookie is removed",
             "/shop/basket", [("Cookie", f"theme=dark; id_token={good}")]),
            ("token in the query -> 200, only id_token is removed", f"/shop/basket?page=2&id_token={good}", []),
            ("no token -> 401, WWW-Authenticate: Bearer realm=\"mpass-guard\"", "/shop/basket", []),
            ("expired -> 401 {\"error\":\"invalid_token\",\"reason\":\"expired\"}",
             "/shop/basket", [("Authorization", f"Bearer {expired}")]),
            ("wrong audience -> 403 {\"error\":\"forbidden\",\"reason\":\"audience_mismatch\"}",
             "/shop/basket", [("Authorization", f"Bearer {wrong_aud}")]),
            ("route matched by name (library-route) -> 200", "/library/loans",
             [("Authorization", f"Bearer {library}")]),
            ("teacher with e-mail -> 200; which x-mpass-* headers appear is up to the studeo contract",
             "/shop/checkout", [("Authorization", f"Bearer {teacher}")]),
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
            for title, path, headers in demos:
                conn = http.client.HTTPConnection(HOST, LISTENER, timeout=10)
                conn.putrequest("GET", path)
                for k, v in headers:
                    conn.putheader(k, v)
                conn.endheaders()
                r = conn.getresponse()
                r.read()
                conn.close()
                print(f"smoke: {r.status}  {title}")
            return 0

        print("Ctrl-C to stop.")
        while envoy.poll() is None:
            time.sleep(0.5)
        die(f"Envoy exited ({envoy.returncode}); see {log_path}")
    finally:
        stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
