#!/usr/bin/env python3
"""Leak sweep: the oracle of issue 11's invariant, in the real Envoy.

A seeded generator sends requests over paths (matched, unmatched, odd
spellings), authorities (exact and every odd spelling), token carriers (the
configured header, cookie and query parameter, ``Referer``/``Origin`` with
``?id_token=``, other headers and cookies, request trailers over HTTP/2),
tokens (valid learner and teacher, expired, wrong audience, bad signature,
``typ: at+jwt``, an unconfigured issuer) and spoofed identity headers. Every
request is recorded with its variant labels and the outcome a sealed filter
must give, computed here in Python from the minted claims and the small sweep
contract (never by asking the filter or its CLI).

Envoy runs with the settings SECURITY.md recommends (and a second ``plain``
listener with Envoy's default path handling, where the filter's own matching
and its ``ambiguous_path`` rule must hold) and an HTTP/2 (h2c) recording
upstream, so request trailers are forwarded. The upstream checks every
request it receives:

(a) ``token-leak``: no JWT of a configured issuer anywhere (path, query, every
    header value, every cookie, trailers; raw or percent-encoded), unless the
    matched provider's contract forwards the token;
(b) ``spoofed-identity``: no client-supplied identity header (each spoofed
    value is a unique marker; no marker may arrive anywhere);
(c) ``release-mismatch``: the identity headers are exactly the contract's
    release for that token (organisation filtering, identifier form);
(d) ``byte-exact``: every non-identity header and cookie the client sent
    arrives byte for byte;
and ``should-be-refused``: a request a sealed filter answers itself (bad or
no token on a protected path, malformed authority) must not arrive, and no
such request may get a 200. With ``bypass_cors_preflight`` and
``public_prefixes`` configured, ``should-pass``: a preflight or a public
sub-path of a provider must arrive.

Run alone: ``.venv/bin/python tests/e2e/sweep.py --requests 20000`` (``make
sweep``); ``--variant sealed`` adds ``unmatched: deny``,
``bypass_cors_preflight`` and ``public_prefixes``; ``--control`` sends only
the variants today's filter already handles (the oracle's own check). A
bounded run is part of ``make test`` (tests/e2e/test_leak_sweep.py).
"""

from __future__ import annotations

import argparse
import base64
import collections
import http.client
import json
import random
import re
import socket
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions

sys.path.insert(0, str(Path(__file__).parent))

import harness  # noqa: E402

ISS = "https://mpass-proxy-test.csc.fi"
ISS_OTHER = "https://unconfigured-idp.example"  # never configured: its tokens are not ours
SHOP_HOST = "shop.studeo.example"
OTHER_HOST = "www.school.example"
ORG = "1.2.246.562.10.00000000001"
FIXTURES = harness.REPO / "tests" / "fixtures" / "claims"
PERSONS = {"learner": "learner-1.4.json", "teacher": "teacher-two-providers-1.4.json"}

# The recommended strip list of today (README example); the built-in list of
# issue 11 must cover the rest of SPOOF_NAMES by itself.
STRIP_HEADERS = ["x-forwarded-user", "x-userinfo", "x-id-token", "x-auth-request-*"]

# ---------------------------------------------------------------- the sweep contract

PROVIDERS: dict[str, dict[str, Any]] = {
    # Authority provider (any path on shop.studeo.example): value-level filtering.
    "shop": {"audiences": ["shop"], "match": {"authorities": [SHOP_HOST]},
             "contract": {"organisations": [ORG], "identifier_form": "tk",
                          "release": {"uid": {}, "given_name": {"header": "x-shop-first-name"},
                                      "school_info": {}}}},
    # Path-prefix provider on any other authority.
    "pathshop": {"audiences": ["pathshop"], "match": {"path_prefixes": ["/shop/"]},
                 "contract": {"organisations": ["*"],
                              "release": {"uid": {}, "family_name": {}}}},
    # Route-name provider (the route /library/ is named library-route).
    "library": {"audiences": ["library"], "match": {"route_names": ["library-route"]},
                "contract": {"organisations": ["*"], "release": {"given_name": {}}}},
    # The one provider whose contract forwards the raw token.
    "fwd": {"audiences": ["fwd"], "match": {"path_prefixes": ["/fwd/"]},
            "contract": {"organisations": ["*"], "release": {"uid": {}}, "forward_token": True}},
}
PUBLIC_PREFIXES = {"pathshop": ["/shop/static/", "/shop/healthz"]}
# Every header a contract of the sweep can emit (besides the owned prefix).
CONTRACT_HEADERS = {"x-shop-first-name"}


def plugin_config(variant: str) -> dict[str, Any]:
    """``base``: fields of today only. ``sealed``: plus the issue-11 fields."""
    providers = json.loads(json.dumps(PROVIDERS))
    config: dict[str, Any] = {
        "issuers": [{
            "issuer": ISS,
            "local_jwks": {"inline_string": harness.jwks((harness.key_path("rsa-a.pem"), "a", "RS256"))},
            "allowed_algorithms": ["RS256"],
        }],
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "from_cookies": ["id_token"],
        "from_params": ["id_token"],
        "header_prefix": "x-mpass-",
        "strip_headers": STRIP_HEADERS,
        "providers": providers,
    }
    if variant == "sealed":
        config["unmatched"] = "deny"
        config["bypass_cors_preflight"] = True
        for pid, prefixes in PUBLIC_PREFIXES.items():
            providers[pid]["public_prefixes"] = prefixes
    elif variant != "base":
        raise ValueError(f"unknown variant {variant!r} (base or sealed)")
    return config


def school_id(value: str) -> str:
    return value.split(";", 1)[0]


def is_oid(s: str) -> bool:
    return s.startswith("1.2.246.562.")


def expected_release(pid: str, claims: dict[str, Any]) -> dict[str, Any]:
    """Header -> value (str for single, list for multi) the contract gives for these claims."""
    if pid == "shop":
        # Roles kept: those in the permitted organisation. School info: the
        # schools of kept roles, TK form only (identifier_form tk).
        kept = [r.split(";") for r in claims.get("urn:mpass.id:role", []) if r.split(";")[0] == ORG]
        schools = {f for r in kept for f in (r[1], r[5]) if f}
        info = [v for v in claims.get("urn:mpass.id:schoolInfo", [])
                if school_id(v) in schools and not is_oid(school_id(v))]
        out = {"x-mpass-uid": claims["urn:mpass.id:uid"], "x-shop-first-name": claims["given_name"]}
        if info:
            out["x-mpass-school-info"] = info
        return out
    if pid == "pathshop":
        return {"x-mpass-uid": claims["urn:mpass.id:uid"], "x-mpass-family-name": claims["family_name"]}
    if pid == "library":
        return {"x-mpass-given-name": claims["given_name"]}
    if pid == "fwd":
        return {"x-mpass-uid": claims["urn:mpass.id:uid"]}
    raise KeyError(pid)


# ---------------------------------------------------------------- request identity model

AUTHORITIES = {
    "exact": SHOP_HOST, "upper": SHOP_HOST.upper(), "trailing-dot": SHOP_HOST + ".",
    "port-8443": SHOP_HOST + ":8443", "port-0443": SHOP_HOST + ":0443", "port-443": SHOP_HOST + ":443",
    "empty-port": SHOP_HOST + ":", "userinfo": "user@" + SHOP_HOST, "brackets": f"[{SHOP_HOST}]",
    "dotdot": "..", "port-abc": SHOP_HOST + ":abc", "other": OTHER_HOST,
}


def parse_authority(a: str) -> tuple[str, int | None] | None:
    """Host (lowercase, no trailing dot) and port, or None when malformed."""
    host, sep, port = a.rpartition(":") if ":" in a else (a, "", "")
    if "@" in a or a.startswith("[") or not host or ".." in host:
        return None
    if sep and (not port.isdigit() or (len(port) > 1 and port[0] == "0")):
        return None
    return host.lower().rstrip("."), int(port) if sep else None


PATHS = {
    "shop": "/shop/orders", "shop-public-static": "/shop/static/app.css",
    "shop-public-healthz": "/shop/healthz", "library": "/library/loans", "fwd": "/fwd/report",
    "app": "/app/home", "static": "/static/app.js", "Shop-case": "/Shop/orders",
    "nobody": "/nobody/claims/this", "jsessionid": "/shop;jsessionid=ABC/orders",
    "semicolon": "/shop;/x", "encoded-o": "/sh%6fp/x", "encoded-S": "/%73hop/orders",
    "dotdot-library": "/library/../shop/x", "dot": "/shop/./orders", "double-slash-lead": "//shop/orders",
    "double-slash": "/shop//orders", "encoded-slash": "/shop%2Forders",
}
# Sent to a second listener with Envoy's default path handling (no
# normalisation): the filter's own matching must hold there too.
PLAIN_PATHS = ["library", "dotdot-library", "shop", "jsessionid", "encoded-o", "static"]
UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def canonical(path: str, resolve: bool = True) -> str:
    """The path as a servlet container serves it: unreserved and `/` decoded,
    `;` parameters dropped, slashes merged, dot segments resolved (kept with
    ``resolve=False``: how a prefix match reads the path as sent)."""
    def dec(m: re.Match) -> str:
        c = chr(int(m.group(1), 16))
        return c if c in UNRESERVED or c == "/" else m.group(0)
    p = re.sub(r"%([0-9A-Fa-f]{2})", dec, path.partition("?")[0])
    out: list[str] = []
    for seg in p.split("/"):
        seg = seg.split(";", 1)[0]
        if seg == "" or (seg == "." and resolve):
            continue
        if seg == ".." and resolve:
            if out:
                out.pop()
            continue
        out.append(seg)
    return "/" + "/".join(out) + ("/" if p.endswith("/") and out else "")


def owner(authority: str, path: str, resolve: bool = True) -> str | None:
    """Whose request it is: route name, then authority, then path prefix."""
    parsed = parse_authority(authority)
    c = canonical(path, resolve)
    if c.startswith("/library/"):
        return "library"
    if parsed and parsed[0] == SHOP_HOST and parsed[1] in (None, 80, 443):
        return "shop"
    for pid in ("pathshop", "fwd"):
        if any(c.startswith(p) for p in PROVIDERS[pid]["match"].get("path_prefixes", [])):
            return pid
    return None


# ---------------------------------------------------------------- tokens

TOKEN_KINDS = ["learner", "teacher", "expired", "wrong-aud", "bad-sig", "at+jwt", "other-issuer", "none"]


def person_claims(person: str) -> dict[str, Any]:
    c = json.loads((FIXTURES / PERSONS[person]).read_text())
    return {k: v for k, v in c.items() if not k.startswith("_")}


def mint_tokens() -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    """(kind, audience) -> (token, claims), for every provider as audience."""
    key_a, key_b = harness.key_path("rsa-a.pem"), harness.key_path("rsa-b.pem")
    out = {}
    for aud in PROVIDERS:
        for person in PERSONS:
            c = dict(person_claims(person), iss=ISS, aud=aud)
            out[(person, aud)] = (harness.mint(key_a, "RS256", c, kid="a"), c)
        c = dict(person_claims("learner"), iss=ISS, aud=aud)
        out[("expired", aud)] = (harness.mint(key_a, "RS256", c, kid="a", exp_in=-3600,
                                              iat_offset=-4000), c)
        out[("at+jwt", aud)] = (harness.mint(key_a, "RS256", c, kid="a",
                                             header={"typ": "at+jwt"}), c)
        h, p, s = out[("learner", aud)][0].split(".")
        out[("bad-sig", aud)] = (f"{h}.{p}.{s[:-6]}AAAAAA", c)
        wc = dict(c, aud="someone-else")
        out[("wrong-aud", aud)] = (harness.mint(key_a, "RS256", wc, kid="a"), wc)
        oc = dict(c, iss=ISS_OTHER)
        out[("other-issuer", aud)] = (harness.mint(key_b, "RS256", oc, kid="b"), oc)
    return out


def b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


JWT_RE = re.compile(r"[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
SEGMENT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{16,}")


def claims_of(segment: str) -> Any:
    try:
        return json.loads(b64d(segment))
    except ValueError:
        return None


def configured_jwts(value: str) -> list[str]:
    """Every JWT in ``value`` (raw, or percent-decoded up to twice) whose
    header is JSON with ``alg`` and whose unverified ``iss`` is configured."""
    found = []
    seen = {value}
    variants = [value]
    for _ in range(2):
        nxt = urllib.parse.unquote(variants[-1])
        if nxt in seen:
            break
        seen.add(nxt)
        variants.append(nxt)
    for v in variants:
        for m in JWT_RE.finditer(v):
            h, p, _ = m.group(0).split(".", 2)
            header, payload = claims_of(h), claims_of(p)
            if isinstance(header, dict) and "alg" in header and isinstance(payload, dict) \
                    and payload.get("iss") == ISS:
                found.append(m.group(0))
        # A payload alone (header or signature cut off) is as much a leak.
        for m in SEGMENT_RE.finditer(JWT_RE.sub("", v)):
            payload = claims_of(m.group(0))
            if isinstance(payload, dict) and payload.get("iss") == ISS:
                found.append(m.group(0))
    return list(dict.fromkeys(found))


# ---------------------------------------------------------------- requests

CARRIERS = ["header", "cookie", "query", "none"]
COPIES = ["referer", "referer-encoded", "origin", "proxy-authorization", "x-access-token",
          "x-forwarded-access-token", "other-cookie", "other-header", "trailer"]
SPOOF_NAMES = [
    "X-Mpass-Uid", "x-mpass-given-name", "X-MPASS-SCHOOL-INFO", "x-mpass-family-name", "X-Mpass-Payload",
    "x_mpass_uid", "X_Mpass-Role", "x-shop-first-name", "x-forwarded-user", "x-forwarded-email",
    "x-forwarded-groups", "x-forwarded-preferred-username", "x-auth-request-user",
    "x-auth-request-email", "remote-user", "x-remote-user", "x-remote-group", "x-remote-email",
    "x-userinfo", "x-id-token", "x-user", "x-user-id", "x-email", "x-jwt-assertion", "x-jwt-payload",
    "x-pomerium-jwt-assertion", "x-pomerium-claim-email", "x-goog-authenticated-user-email",
    "x-ms-client-principal-name", "x-amzn-oidc-identity", "oidc_claim_email", "x-userinfo",
]
# Non-identity headers and cookies that must arrive byte-exact.
KEEP_COOKIES = [(b"theme", b"dark"), (b"bin", b"\xff\xfe-\xe4"), (b"sess", b"s%3Dabc.def")]


@dataclass
class Req:
    rid: str
    labels: dict[str, str]
    method: str
    path: str
    authority: str
    headers: list[tuple[str, bytes]]
    trailers: list[tuple[str, bytes]]
    markers: list[str]
    keep_headers: list[tuple[str, bytes]]
    keep_cookies: list[tuple[bytes, bytes]]
    may_arrive: bool
    must_arrive: bool
    release: dict[str, Any]
    allowed_token: str | None
    refuse_reason: str = ""
    h2: bool = False
    status: int = 0
    arrived: int = 0


# The variants today's filter already handles: the control sweep (no
# violation expected before or after issue 11) proves the oracle is not
# trivially failing. Spoofs there are the owned prefix, a contract header and
# the configured strip list.
CONTROL = {
    "authority": ["exact", "upper", "port-443", "other"],
    "path": ["shop", "library", "fwd", "app", "dot", "double-slash", "double-slash-lead",
             "encoded-slash", "shop-public-static"],
    "token": ["learner", "teacher", "expired", "wrong-aud", "bad-sig", "none"],
    "spoof": ["X-Mpass-Uid", "x-mpass-given-name", "X-MPASS-SCHOOL-INFO", "x_mpass_uid",
              "x-shop-first-name", "x-forwarded-user", "x-auth-request-email", "x-userinfo",
              "x-id-token"],
}


def build(rng: random.Random, i: int, tokens: dict, variant: str, control: bool = False) -> Req:
    rid = f"s{i}"
    if control:
        akind, pkind = rng.choice(CONTROL["authority"]), rng.choice(CONTROL["path"])
        tkind = rng.choice(CONTROL["token"])
    else:
        akind = rng.choice(list(AUTHORITIES)) if rng.random() < 0.45 else "other"
        pkind = rng.choice(list(PATHS))
        tkind = rng.choice(TOKEN_KINDS)
    listener = "plain" if not control and rng.random() < 0.15 else "recommended"
    if listener == "plain":
        pkind = rng.choice(PLAIN_PATHS)
    authority, path = AUTHORITIES[akind], PATHS[pkind]
    own = owner(authority, path)
    if control and own is None:
        tkind = "none"  # an unmatched path forwards the token today
    carrier = "none" if tkind == "none" else rng.choice(CARRIERS[:3])
    preflight = not control and rng.random() < 0.08
    copies = [] if tkind == "none" or control else rng.sample(COPIES, rng.choice([0, 0, 1, 1, 2]))
    if listener == "plain" and "trailer" in copies:
        copies.remove("trailer")
    use_h2 = listener == "recommended" and ("trailer" in copies or rng.random() < 0.1)
    if use_h2:
        akind, authority = "other", OTHER_HOST  # odd authorities over HTTP/1.1 only
        own = owner(authority, path)
        if control and own is None:
            tkind, carrier = "none", "none"
    # A token for the owner, or (a quarter of them) for another provider: the
    # one the path as sent seems to belong to, when it differs.
    seems = owner(authority, path, resolve=False)
    aud = own if own and rng.random() < 0.75 else (
        seems if seems and seems != own else rng.choice(list(PROVIDERS)))
    tok, claims = tokens.get((tkind, aud), (None, {}))
    labels = {"authority": akind, "path": pkind, "token": tkind, "carrier": carrier,
              "copies": "+".join(sorted(copies)) or "-", "owner": own or "unmatched",
              "method": "preflight" if preflight else "GET", "protocol": "h2" if use_h2 else "h1",
              "listener": listener, "audience": "owner" if aud == own else "other"}
    headers: list[tuple[str, bytes]] = [("x-sweep-id", rid.encode())]
    trailers: list[tuple[str, bytes]] = []
    cookies = list(KEEP_COOKIES)
    if control and carrier == "cookie":
        cookies.remove((b"bin", KEEP_COOKIES[1][1]))  # removing the token cookie rewrites it today
    if carrier == "header":
        headers.append(("Authorization", f"Bearer {tok}".encode()))
    elif carrier == "cookie":
        cookies.insert(rng.randrange(len(cookies) + 1), (b"id_token", tok.encode()))
    elif carrier == "query":
        path += ("&" if "?" in path else "?") + f"id_token={tok}"
    origin_sent = False
    for c in copies:
        if c == "referer":
            headers.append(("Referer", f"https://{SHOP_HOST}/shop/orders?id_token={tok}".encode()))
        elif c == "referer-encoded":
            enc = urllib.parse.quote(f"/cb?id_token={tok}", safe="").replace(".", "%2E")
            headers.append(("Referer", f"https://app.example/login?next={enc}".encode()))
        elif c == "origin":
            headers.append(("Origin", f"https://app.example/?id_token={tok}".encode()))
            origin_sent = True
        elif c == "proxy-authorization":
            headers.append(("Proxy-Authorization", f"Bearer {tok}".encode()))
        elif c == "x-access-token":
            headers.append(("X-Access-Token", tok.encode()))
        elif c == "x-forwarded-access-token":
            headers.append(("X-Forwarded-Access-Token", tok.encode()))
        elif c == "other-cookie":
            cookies.append((b"session_jwt", tok.encode()))
        elif c == "other-header":
            headers.append(("X-Debug-Blob", f"t={tok}".encode()))
        elif c == "trailer":
            trailers.append(("authorization", f"Bearer {tok}".encode()))
    markers = []
    for j, name in enumerate(rng.sample(CONTROL["spoof"] if control else SPOOF_NAMES, 3)):
        m = f"SWEEPSPOOF{i}x{j}"
        markers.append(m)
        headers.append((name, m.encode()))
    if use_h2 and not control:  # trailers are not sanitised today
        m = f"SWEEPSPOOF{i}xt"
        markers.append(m)
        trailers += [("x-mpass-uid", m.encode()), ("x-forwarded-user", (m + "u").encode())]
        markers.append(m + "u")
    if use_h2:
        trailers.append(("x-sweep-trailer-keep", f"tk-{i}".encode()))
    keep = [("X-Sweep-Keep", f"k-{i}-\u00e4".encode("latin-1")), ("Accept-Language", b"fi-FI,fi;q=0.9")]
    if preflight:
        keep.append(("Access-Control-Request-Method", b"POST"))
        if not origin_sent:
            keep.append(("Origin", b"https://app.example"))
    headers += keep
    keep_cookies = [c for c in cookies if c[0] in {k for k, _ in KEEP_COOKIES}]
    headers.append(("Cookie", b"; ".join(k + b"=" + v for k, v in cookies)))
    if use_h2:
        headers = [(k.lower(), v) for k, v in headers]
        keep = [(k.lower(), v) for k, v in keep] + [t for t in trailers if t[0] == "x-sweep-trailer-keep"]

    may, must, release, allowed, reason = outcome(
        variant, authority, path, listener, preflight, carrier, tkind, claims)
    return Req(rid, labels, "OPTIONS" if preflight else ("POST" if use_h2 else "GET"), path,
               authority, headers, trailers, markers, keep, keep_cookies, may, must, release,
               tok if allowed else None, reason, use_h2)


def outcome(variant: str, authority: str, path: str, listener: str, preflight: bool,
            carrier: str, tkind: str, claims: dict[str, Any]
            ) -> tuple[bool, bool, dict[str, Any], bool, str]:
    """What a sealed filter does with the request: (may arrive, must arrive,
    the release, the token may stay, why it is refused)."""
    sealed = variant == "sealed"
    own = owner(authority, path)
    if parse_authority(authority) is None:
        return False, False, {}, False, "malformed-authority"
    if listener == "plain" and owner(authority, path, resolve=False) != own:
        return False, False, {}, False, "ambiguous-path"
    if own is None:
        deny = sealed and carrier != "none" and tkind != "other-issuer"
        return not deny, False, {}, False, "unmatched-deny" if deny else ""
    public = any(canonical(path).startswith(p) for p in PUBLIC_PREFIXES.get(own, []))
    if sealed and (public or preflight):
        # Envoy answers an escaped slash itself on the recommended listener
        # (UNESCAPE_AND_REDIRECT, 307) before any filter runs.
        redirected = listener == "recommended" and "%2f" in path.lower()
        return True, not redirected, {}, False, ""
    if carrier != "none" and tkind in PERSONS and claims.get("aud") == own:
        forward = bool(PROVIDERS[own]["contract"].get("forward_token"))
        return True, False, expected_release(own, claims), forward, ""
    return False, False, {}, False, f"protected-{tkind}"


# ---------------------------------------------------------------- the oracle


@dataclass
class Arrival:
    pseudo: dict[str, bytes]
    headers: list[tuple[bytes, bytes]]
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)


class Oracle:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reqs: dict[str, Req] = {}
        self.violations: collections.Counter[str] = collections.Counter()
        self.by_request: dict[str, list[str]] = collections.defaultdict(list)
        self.samples: dict[str, list[str]] = collections.defaultdict(list)
        self.arrivals = 0

    def register(self, req: Req) -> None:
        with self.lock:
            self.reqs[req.rid] = req

    def flag(self, rid: str, category: str, detail: str) -> None:
        with self.lock:
            self.violations[category] += 1
            self.by_request[rid].append(f"{category}:{detail}")
            if len(self.samples[category]) < 4:
                self.samples[category].append(f"{rid} {detail}")

    def check(self, a: Arrival) -> None:
        rid = next((text(v) for k, v in a.headers if k == b"x-sweep-id"), "")
        with self.lock:
            self.arrivals += 1
            req = self.reqs.get(rid)
            if req is not None:
                req.arrived += 1
        if req is None:
            self.flag(rid or "?", "unknown-request", text(a.pseudo.get(b":path", b"")))
            return
        if not req.may_arrive:
            self.flag(rid, "should-be-refused", f"{req.refuse_reason} reached the upstream {req.labels}")
        self.check_values(req, a)
        self.check_release(req, a)
        self.check_byte_exact(req, a)

    def check_values(self, req: Req, a: Arrival) -> None:
        """(a) no configured-issuer token, except one a forwarding contract
        keeps; (b) no client-supplied identity value."""
        fields = [("path", text(a.pseudo.get(b":path", b"")))]
        fields += [(f"header:{text(k)}", text(v)) for k, v in a.headers if k != b"cookie"]
        fields += [(f"trailer:{text(k)}", text(v)) for k, v in a.trailers]
        fields += [(f"cookie:{text(n)}", text(v)) for n, v in cookie_pairs(a.headers)]
        for where, value in fields:
            if any(jwt not in (req.allowed_token or "") for jwt in configured_jwts(value)):
                self.flag(req.rid, "token-leak", f"{where} {req.labels}")
            for m in req.markers:
                if m in value:
                    self.flag(req.rid, "spoofed-identity", f"{where} {req.labels}")

    def check_release(self, req: Req, a: Arrival) -> None:
        """(c) the identity headers are exactly the contract's release."""
        got: dict[str, list[str]] = collections.defaultdict(list)
        for k, v in a.headers + a.trailers:
            name = text(k).replace("_", "-")
            if name.startswith("x-mpass-") or name in CONTRACT_HEADERS:
                got[name].append(text(v))
        for name in set(got) | set(req.release):
            want, vals = req.release.get(name), got.get(name, [])
            if want is None:
                if not any(m in v for v in vals for m in req.markers):  # (b) counted that
                    self.flag(req.rid, "release-mismatch", f"{name} not in the contract {req.labels}")
            elif len(vals) != 1 or not decode_release(vals[0], want):
                self.flag(req.rid, "release-mismatch", f"{name}: {len(vals)} value(s), wrong {req.labels}")

    def check_byte_exact(self, req: Req, a: Arrival) -> None:
        """(d) every non-identity header and cookie sent arrives byte for byte."""
        for k, v in req.keep_headers:
            if [hv for hk, hv in a.headers + a.trailers if hk == k.lower().encode()] != [v]:
                self.flag(req.rid, "byte-exact", f"header {k} {req.labels}")
        cookies = cookie_pairs(a.headers)
        for name, value in req.keep_cookies:
            if [c for c in cookies if c[0] == name] != [(name, value)]:
                self.flag(req.rid, "byte-exact", f"cookie {text(name)} {req.labels}")


def text(b: bytes) -> str:
    """Bytes as text, every byte kept as one character."""
    return b.decode("latin-1")


def cookie_pairs(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """(name, value) of every cookie in every Cookie header, as bytes."""
    out = []
    for k, v in headers:
        if k == b"cookie":
            for part in v.split(b";"):
                name, _, value = part.strip().partition(b"=")
                out.append((name, value))
    return out


def decode_release(raw: str, want: Any) -> bool:
    if not raw.isascii() or not raw.isprintable():
        return False
    try:
        if isinstance(want, list):
            return json.loads(raw) == want
        return urllib.parse.unquote(raw, errors="strict") == want
    except (ValueError, UnicodeDecodeError):
        return False


# ---------------------------------------------------------------- h2c recording upstream


class H2Upstream:
    """Records every request (pseudo-headers, headers and trailers as bytes) and answers 200."""

    def __init__(self, oracle: Oracle) -> None:
        self.oracle = oracle
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((harness.LOOPBACK, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        cfg = h2.config.H2Configuration(client_side=False, header_encoding=None,
                                        validate_inbound_headers=False)
        conn = h2.connection.H2Connection(cfg)
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        streams: dict[int, Arrival] = {}
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        pseudo = {k: v for k, v in ev.headers if k.startswith(b":")}
                        streams[ev.stream_id] = Arrival(
                            pseudo, [(k, v) for k, v in ev.headers if not k.startswith(b":")])
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.TrailersReceived):
                        streams[ev.stream_id].trailers = list(ev.headers)
                    if isinstance(ev, h2.events.StreamEnded):
                        sid = ev.stream_id
                        if sid in streams:
                            self.oracle.check(streams.pop(sid))
                            conn.send_headers(sid, [(b":status", b"200"), (b"content-length", b"2")])
                            conn.send_data(sid, b"ok", end_stream=True)
                sock.sendall(conn.data_to_send())
        except (OSError, h2.exceptions.ProtocolError):
            return
        finally:
            sock.close()

    def stop(self) -> None:
        self.closed = True
        self.sock.close()


# ---------------------------------------------------------------- Envoy


def envoy_config(envoy: harness.Envoy, plain_port: int, upstream_port: int,
                 plugin: dict[str, Any]) -> dict:
    """Bootstrap with SECURITY.md's HCM settings and an HTTP/2 upstream (trailers
    forwarded), plus a ``plain`` listener on ``plain_port`` that leaves paths as sent."""
    bs = harness.bootstrap(upstream_port, envoy.port, envoy.admin_port, [harness.wasm_filter(plugin)])
    listeners = bs["static_resources"]["listeners"]
    plain = json.loads(json.dumps(listeners[0]))
    plain["name"] = "plain"
    plain["address"]["socket_address"]["port_value"] = plain_port
    listeners.append(plain)
    for listener in listeners:
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        hcm.update({
            "common_http_protocol_options": {"headers_with_underscores_action": "DROP_HEADER"},
            "http_protocol_options": {"enable_trailers": True},
        })
    hcm = listeners[0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm.update({"normalize_path": True, "merge_slashes": True,
                "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT"})
    bs["static_resources"]["clusters"][0]["typed_extension_protocol_options"] = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }}
    return bs


# ---------------------------------------------------------------- clients


def send_h1(conn_box: list, port: int, req: Req) -> int:
    """One HTTP/1.1 request on a kept-alive connection; header bytes as given (latin-1)."""
    for attempt in range(2):
        if conn_box[0] is None:
            conn_box[0] = http.client.HTTPConnection(harness.LOOPBACK, port, timeout=10)
        conn = conn_box[0]
        try:
            conn.putrequest(req.method, req.path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", req.authority)
            for k, v in req.headers:
                conn.putheader(k, v.decode("latin-1"))
            conn.endheaders()
            r = conn.getresponse()
            r.read()
            if (r.getheader("connection") or "").lower() == "close":
                conn.close()
                conn_box[0] = None
            return r.status
        except (OSError, http.client.HTTPException):
            conn.close()
            conn_box[0] = None
            if attempt:
                return 0
    return 0


def send_h2(port: int, req: Req) -> int:
    """One h2c request (prior knowledge) with a body and request trailers."""
    with socket.create_connection((harness.LOOPBACK, port), timeout=10) as sock:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                    header_encoding=None))
        conn.initiate_connection()
        hdrs = [(b":method", req.method.encode()), (b":path", req.path.encode()),
                (b":scheme", b"http"), (b":authority", req.authority.encode())]
        hdrs += [(k.encode(), v) for k, v in req.headers]
        conn.send_headers(1, hdrs)
        conn.send_data(1, b"payload")
        conn.send_headers(1, [(k.encode(), v) for k, v in req.trailers], end_stream=True)
        sock.sendall(conn.data_to_send())
        status = 0
        while True:
            data = sock.recv(65536)
            if not data:
                return status
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = int(dict(ev.headers)[b":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                    return status
            sock.sendall(conn.data_to_send())


# ---------------------------------------------------------------- run and report

# Which violations prove each bullet of issue 11 (a predicate over one flagged
# request: its labels and its violation strings).
BULLETS: dict[str, Any] = {
    "unmatched paths forward the token": lambda r, v: r.labels["owner"] == "unmatched" and any(
        x.startswith("token-leak:") and not x.startswith(("token-leak:header:referer",
                                                          "token-leak:header:origin")) for x in v),
    "authority spellings bypass matching": lambda r, v: r.labels["authority"] not in (
        "exact", "other"),
    "path spellings skip path providers": lambda r, v: r.labels["path"] in (
        "jsessionid", "semicolon", "encoded-o", "encoded-S", "dotdot-library"),
    "query tokens come back in Referer": lambda r, v: any(
        x.startswith(("token-leak:header:referer", "token-leak:header:origin")) for x in v),
    "trailers never sanitised": lambda r, v: any(":trailer:" in x for x in v),
    "token copies outside the carriers pass": lambda r, v: r.labels["owner"] != "unmatched" and any(
        x.startswith(("token-leak:header:proxy-authorization", "token-leak:header:x-access-token",
                      "token-leak:header:x-forwarded-access-token", "token-leak:cookie:session_jwt",
                      "token-leak:header:x-debug-blob")) for x in v),
    "default strip list misses identity families": lambda r, v: any(
        x.startswith("spoofed-identity:header:") and not x.startswith(
            ("spoofed-identity:header:x-mpass", "spoofed-identity:header:x-shop")) for x in v),
    "token cookie removal rewrites other cookies": lambda r, v: any(
        x.startswith("byte-exact:cookie") for x in v),
    "CORS preflight / public sub-paths": lambda r, v: any(x.startswith("should-pass:") for x in v),
}


def run(requests: int = 2000, seconds: float | None = None, seed: int = 11, variant: str = "base",
        control: bool = False, threads: int = 2) -> dict[str, Any]:
    """Sends the sweep and returns its report (``control``: only the variants
    today's filter already handles)."""
    harness.require_envoy()
    harness.require_wasm()
    harness.require_cli()
    rng = random.Random(seed)
    tokens = mint_tokens()
    oracle = Oracle()
    upstream = H2Upstream(oracle)
    envoy = harness.Envoy(upstream.port, None, log_level="warning",
                          workdir=Path(tempfile.mkdtemp(prefix="mpass-guard-sweep-")))
    plain_port = harness._ephemeral_port()
    envoy._config = envoy_config(envoy, plain_port, upstream.port, plugin_config(variant))
    envoy.plugin_config = {}  # so launch() requires the Wasm module
    lock = threading.Lock()
    counter = iter(range(10**9))
    stop_at = time.monotonic() + seconds if seconds else None
    statuses: collections.Counter[str] = collections.Counter()
    sent: list[Req] = []
    try:
        envoy.start()

        def worker() -> None:
            boxes: dict[bool, list] = {False: [None], True: [None]}
            while True:
                with lock:
                    i = next(counter)
                    if (stop_at is None and i >= requests) or (stop_at and time.monotonic() > stop_at):
                        return
                    req = build(rng, i, tokens, variant, control)
                oracle.register(req)
                if req.h2:
                    req.status = send_h2(envoy.port, req)
                else:
                    plain = req.labels["listener"] == "plain"
                    box = boxes[plain]
                    req.status = send_h1(box, plain_port if plain else envoy.port, req)
                with lock:
                    sent.append(req)
                    statuses[str(req.status)] += 1

        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        time.sleep(0.2)  # the last upstream records
    finally:
        envoy.stop()
        upstream.stop()
    for req in sent:
        if req.status == 200 and not req.may_arrive and not req.arrived:
            oracle.flag(req.rid, "should-be-refused", f"200 without reaching upstream {req.labels}")
        if req.must_arrive and (req.status != 200 or not req.arrived):
            oracle.flag(req.rid, "should-pass", f"got {req.status} {req.labels}")
    variants: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for req in sent:
        for k, v in req.labels.items():
            for part in (v.split("+") if k == "copies" else [v]):
                variants[k][part] += 1
    refused = collections.Counter(r.refuse_reason for r in sent if r.arrived and not r.may_arrive)
    by_id = {r.rid: r for r in sent}
    bullets = {name: sum(1 for rid, v in oracle.by_request.items() if rid in by_id and pred(by_id[rid], v))
               for name, pred in BULLETS.items()}
    return {
        "variant": variant, "control": control, "seed": seed, "requests_sent": len(sent),
        "reached_upstream": oracle.arrivals, "statuses": dict(sorted(statuses.items())),
        "variants_covered": sum(len(c) for c in variants.values()),
        "variants": {k: dict(sorted(c.items())) for k, c in sorted(variants.items())},
        "violations": dict(sorted(oracle.violations.items())),
        "violating_requests": len(oracle.by_request),
        "should_be_refused_by_reason": dict(sorted(refused.items())),
        "violations_by_issue_bullet": bullets,
        "violation_samples": dict(oracle.samples),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=None, help="run for a time instead of a count")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--variant", choices=["base", "sealed"], default="base")
    ap.add_argument("--control", action="store_true",
                    help="only the variants today's filter handles (checks the oracle itself)")
    args = ap.parse_args()
    try:
        report = run(args.requests, args.seconds, args.seed, args.variant, args.control)
    except harness.EnvoyFailed as e:
        print(f"Envoy refused the {args.variant} sweep configuration:\n{e}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0 if not report["violations"] else 1


if __name__ == "__main__":
    sys.exit(main())
