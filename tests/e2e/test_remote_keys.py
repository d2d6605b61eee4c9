"""Remote JWKS and discovery through the real Envoy, against a key server the
test controls (``jwks_server.KeyServer``), judged by what the client got AND
what the recording upstream received.

Each test starts its own Envoy (key state is per VM) with short timings:
a 1 s initial wait, 100 ms..400 ms backoff, a 300 ms fetch timeout.
"""

from __future__ import annotations

import concurrent.futures
import secrets
import threading
import time
from typing import Any

import pytest

import harness
from harness import Envoy, key_path, mint, static_cluster
from jwks_server import DISCOVERY_PATH, JWKS_PATH, KeyServer

ISS = "https://mpass-proxy-test.csc.fi"
ISS_LABEL = "mpass-proxy-test_csc_fi"
AUD = "studeo-webshop"
SHOP = "/shop/basket"
KEYS_UNAVAILABLE = {"error": "temporarily_unavailable", "reason": "keys_unavailable"}


def keyset(*names: str) -> str:
    """A JWKS with the test keys ``rsa-a`` / ``rsa-b`` (kid = file stem)."""
    return harness.jwks(*[(key_path(f"{n}.pem"), n, "RS256") for n in names])


KEYS_A = keyset("rsa-a")
KEYS_AB = keyset("rsa-a", "rsa-b")


def token(key: str = "rsa-a", kid: str | None = None, iss: str = ISS) -> str:
    claims = {"iss": iss, "aud": AUD, "sub": "pairwise-subject-1",
              "urn:mpass.id:uid": "MPASSOID.e2e-user"}
    return mint(key_path(f"{key}.pem"), "RS256", claims, kid=kid or key)


def bearer(tok: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {tok}")]


KEY_FETCH = {"initial_wait": "1s", "refetch_interval": "2s", "backoff_initial": "100ms",
             "backoff_max": "400ms"}


def remote_config(server: KeyServer, *, cache: str = "600s", timeout: str = "300ms",
                  key_fetch: dict | None = None, discovery: bool = False,
                  issuer: str = ISS) -> dict[str, Any]:
    iss: dict[str, Any] = {
        "issuer": issuer,
        "allowed_algorithms": ["RS256"],
        "key_fetch": {**KEY_FETCH, **(key_fetch or {})},
    }
    if discovery:
        iss["discovery"] = {"cluster": "jwks", "timeout": timeout, "cache_duration": cache}
    else:
        iss["remote_jwks"] = {"http_uri": {"uri": server.jwks_uri, "cluster": "jwks",
                                           "timeout": timeout},
                              "cache_duration": cache}
    return {
        "issuers": [iss],
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "header_prefix": "x-mpass-",
        "realm": "mpass-guard",
        "providers": {"studeo": {"audiences": [AUD], "match": {"path_prefixes": ["/shop/"]}}},
    }


@pytest.fixture
def keyserver():
    ks = KeyServer()
    yield ks
    ks.stop()


@pytest.fixture
def start_guard(upstream, tmp_path):
    """Starts Envoy with mpass-guard fetching from ``server`` via cluster ``jwks``."""
    started: list[Envoy] = []

    def start(server: KeyServer, **kw: Any) -> Envoy:
        envoy = Envoy(upstream.port, remote_config(server, **kw), workdir=tmp_path / str(len(started)),
                      clusters=[static_cluster("jwks", server.port, connect_timeout="0.25s")])
        started.append(envoy)
        return envoy.start()

    yield start
    for envoy in started:
        envoy.stop()


def stat_name(name: str, label: str = ISS_LABEL) -> str:
    """The full /stats name of a per-issuer filter metric (README "Metrics").

    Envoy puts metrics a Wasm module defines under ``wasmcustom.``; /stats
    shows the whole name, with its ``.key=value`` dimensions.
    """
    dims = f"stat_prefix=main.issuer={label}"
    return {
        "fetch_ok": f"wasmcustom.mpass_guard.key_fetch.{dims}.result=ok",
        "fetch_failed": f"wasmcustom.mpass_guard.key_fetch.{dims}.result=failed",
    }.get(name, f"wasmcustom.mpass_guard.{name}.{dims}")


def stat(envoy: Envoy, name: str, label: str = ISS_LABEL) -> int:
    """A filter metric as Envoy's /stats shows it (0 when never defined)."""
    return int(envoy.stats().get(stat_name(name, label), "0"))


def assert_passed(upstream, resp, tok: str) -> None:
    assert resp.status == 200, f"{resp.status} {resp.body!r}"
    rec = upstream.received()[-1]
    assert rec.values("authorization") == [], "the token reached the upstream"
    assert all(tok not in v for _, v in rec.headers)


def assert_keys_unavailable(upstream, resp) -> None:
    assert resp.status == 503, f"{resp.status} {resp.body!r}"
    assert resp.json() == KEYS_UNAVAILABLE
    assert (resp.header("retry-after") or "").isdigit()
    assert resp.header("www-authenticate") is None
    assert upstream.received() == [], "a request without keys reached the upstream"


def until(predicate, timeout: float = 8.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


# ---------------------------------------------------------------- happy path


def test_served_key_set_lets_a_valid_token_through(keyserver, start_guard, upstream):
    keyserver.serve(KEYS_A)
    guard = start_guard(keyserver)
    tok = token()
    resp = guard.send(SHOP, bearer(tok))
    assert_passed(upstream, resp, tok)
    assert upstream.only().path == SHOP
    assert stat(guard, "fetch_ok") >= 1
    assert stat(guard, "fetch_failed") == 0
    assert stat(guard, "keys_in_use") == 1
    names = [stat_name(m) for m in ("fetch_ok", "keys_in_use", "key_set_age_seconds")]
    assert until(lambda: all(n in guard.stats() for n in names), 2), names
    assert "key set for https://mpass-proxy-test.csc.fi loaded: 1 usable key(s)" in guard.log()


# ---------------------------------------------------------------- outages


def test_server_down_at_start_answers_503_then_recovers_without_restart(keyserver, start_guard,
                                                                         upstream):
    keyserver.down()
    guard = start_guard(keyserver)
    tok = token()
    started = time.monotonic()
    resp = guard.send(SHOP, bearer(tok))
    waited = time.monotonic() - started
    assert_keys_unavailable(upstream, resp)
    assert waited < 5, f"the request was held {waited:.1f}s (initial_wait is 1s)"
    assert stat(guard, "fetch_failed") >= 1
    assert stat(guard, "fetch_ok") == 0
    assert "no key set yet" in guard.log()

    keyserver.serve(KEYS_A)  # listens again on the same port
    assert until(lambda: stat(guard, "fetch_ok") >= 1, 5), "no fetch after the server came back"
    resp = guard.send(SHOP, bearer(tok))
    assert_passed(upstream, resp, tok)


def test_traffic_during_an_outage_does_not_defeat_the_backoff(keyserver, start_guard, upstream):
    keyserver.down()
    guard = start_guard(keyserver, key_fetch={"initial_wait": "200ms", "backoff_initial": "100ms",
                                              "backoff_max": "1s", "refetch_interval": "30s"})
    stop = threading.Event()
    statuses: list[int] = []

    def load() -> None:
        while not stop.is_set():
            statuses.append(guard.send(SHOP, bearer(tok)).status)
            time.sleep(0.02)

    tok = token()
    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(4)
    stop.set()
    for t in threads:
        t.join(10)
    failed = stat(guard, "fetch_failed")
    print(f"outage: {len(statuses)} requests in 4 s, {failed} fetch attempts")
    assert set(statuses) == {503}
    assert upstream.received() == []
    # Per VM (main thread + 1 worker): 0, .1, .3, .7, 1.5, 2.5, 3.5 s -> 7 each,
    # plus one attempt brought forward by a waiting request.
    assert failed <= 2 * 8, f"{failed} fetch attempts: the backoff was bypassed"


@pytest.mark.parametrize("breakage, logged", [
    ("slow", "failed"),
    ("status500", "the response status is 500"),
    ("garbage", "not a usable JWKS"),
    ("oversized", "exceeds 4096 bytes"),
    ("no_usable_key", "no usable signing key"),
    ("closed", "failed"),
])
def test_broken_key_server_is_a_failed_fetch_and_a_503(keyserver, start_guard, upstream,
                                                       breakage, logged):
    if breakage == "slow":
        keyserver.serve(KEYS_A).slow(1.5)  # the fetch timeout is 300 ms
    elif breakage == "status500":
        keyserver.serve(KEYS_A).status(500)
    elif breakage == "garbage":
        keyserver.garbage()
    elif breakage == "oversized":
        keyserver.oversized(5000)
    elif breakage == "no_usable_key":
        # An ES256 key for an issuer that allows RS256 only.
        keyserver.serve(harness.jwks((key_path("ec-p256.pem"), "ec", "ES256")))
    else:
        keyserver.close_connections()
    guard = start_guard(keyserver, key_fetch={"max_response_bytes": 4096})
    resp = guard.send(SHOP, bearer(token()))
    assert_keys_unavailable(upstream, resp)
    assert stat(guard, "fetch_failed") >= 1
    assert stat(guard, "fetch_ok") == 0
    assert stat(guard, "keys_in_use") == 0
    assert logged in guard.log()
    assert keyserver.count(JWKS_PATH) >= 1


# ---------------------------------------------------------------- rotation


def test_new_kid_is_fetched_once_and_a_random_kid_flood_fetches_at_most_once(
        keyserver, start_guard, upstream):
    keyserver.serve(KEYS_A)
    guard = start_guard(keyserver)
    tok_a = token("rsa-a")
    assert_passed(upstream, guard.send(SHOP, bearer(tok_a)), tok_a)
    before = keyserver.count(JWKS_PATH)

    # The issuer rotates in rsa-b; a token with its kid triggers one refetch.
    keyserver.serve(KEYS_AB)
    tok_b = token("rsa-b")
    assert_passed(upstream, guard.send(SHOP, bearer(tok_b)), tok_b)
    assert keyserver.count(JWKS_PATH) == before + 1

    # 50 tokens with random kids, 10 at a time, after the refetch interval.
    time.sleep(2.1)
    flood_start = keyserver.count(JWKS_PATH)
    upstream.clear()
    tokens = [token("rsa-b", kid=f"random-{secrets.token_hex(6)}") for _ in range(50)]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda t: guard.send(SHOP, bearer(t)), tokens))
    elapsed = time.monotonic() - started
    assert {r.status for r in answers} == {401}
    assert {r.json()["reason"] for r in answers} == {"unknown_key"}
    assert upstream.received() == []
    extra = keyserver.count(JWKS_PATH) - flood_start
    allowed = 1 + int(elapsed // 2)  # one per refetch_interval (2 s)
    print(f"random-kid flood: {len(tokens)} tokens in {elapsed:.2f}s caused {extra} fetch(es)")
    assert 1 <= extra <= allowed, f"{extra} fetches for the flood"


def test_removed_key_is_rejected_after_the_next_refresh(keyserver, start_guard, upstream):
    keyserver.serve(KEYS_AB)
    guard = start_guard(keyserver, cache="1s")
    tok_b = token("rsa-b")
    assert_passed(upstream, guard.send(SHOP, bearer(tok_b)), tok_b)

    keyserver.serve(KEYS_A)  # rsa-b retired
    retired = time.monotonic()
    # Every VM (Envoy's main thread and each worker) refreshes on its own
    # every second: poll until the serving worker has refreshed.
    resp = until(lambda: (r := guard.send(SHOP, bearer(tok_b))).status != 200 and r, 5)
    assert resp, "the retired key was still accepted 5 s after it left the key set"
    print(f"retired key refused {time.monotonic() - retired:.2f}s after it left the set")
    assert resp.status == 401, f"{resp.status} {resp.body!r}"
    assert resp.json() == {"error": "invalid_token", "reason": "unknown_key"}
    upstream.clear()
    resp = guard.send(SHOP, bearer(tok_b))
    assert resp.status == 401
    assert upstream.received() == []
    tok_a = token("rsa-a")
    assert_passed(upstream, guard.send(SHOP, bearer(tok_a)), tok_a)


# ---------------------------------------------------------------- discovery


def test_discovery_must_name_our_issuer_then_its_jwks_uri_is_used(keyserver, start_guard,
                                                                  upstream):
    keyserver.serve(KEYS_A).discovery_issuer("https://evil.example")
    issuer = keyserver.base_url
    label = f"127_0_0_1_{keyserver.port}"
    guard = start_guard(keyserver, discovery=True, issuer=issuer)
    tok = token(iss=issuer)
    assert_keys_unavailable(upstream, guard.send(SHOP, bearer(tok)))
    assert "the document names another issuer" in guard.log()
    assert stat(guard, "fetch_failed", label) >= 1
    assert keyserver.count(JWKS_PATH) == 0, "a jwks_uri from a foreign document was used"

    keyserver.discovery_issuer(None)
    assert until(lambda: stat(guard, "keys_in_use", label) == 1, 5)
    assert_passed(upstream, guard.send(SHOP, bearer(tok)), tok)
    assert keyserver.count(DISCOVERY_PATH) >= 2
    assert keyserver.count(JWKS_PATH) >= 1


def test_rotation_that_needs_discovery_again_waits_for_the_key_set(keyserver, start_guard,
                                                                   upstream):
    """After a failed fetch the next one starts with discovery; a request
    waiting for a new kid must wait for the key set behind it, not be judged
    against the old set as soon as the discovery document arrives."""
    keyserver.serve(KEYS_A)
    issuer = keyserver.base_url
    guard = start_guard(keyserver, discovery=True, issuer=issuer,
                        key_fetch={"backoff_initial": "3s", "backoff_max": "3s"})
    tok_a, tok_b = token("rsa-a", iss=issuer), token("rsa-b", iss=issuer)
    assert_passed(upstream, guard.send(SHOP, bearer(tok_a)), tok_a)

    keyserver.status(500)  # the unknown-kid refetch fails: next time, discovery first
    upstream.clear()
    resp = guard.send(SHOP, bearer(tok_b))
    assert resp.status == 401 and resp.json()["reason"] == "unknown_key"
    failed_at = time.monotonic()

    keyserver.serve(KEYS_AB)
    time.sleep(max(0.0, 2.2 - (time.monotonic() - failed_at)))  # past refetch_interval, before the retry
    discovery_before = keyserver.count(DISCOVERY_PATH)
    resp = guard.send(SHOP, bearer(tok_b))
    assert keyserver.count(DISCOVERY_PATH) > discovery_before, "the refetch did not redo discovery"
    assert_passed(upstream, resp, tok_b)
    assert upstream.only().values("authorization") == []


# ---------------------------------------------------------------- flapping


def test_flapping_key_server_under_load_never_fails_a_valid_token(keyserver, start_guard,
                                                                  upstream):
    keyserver.serve(KEYS_A)
    # Refresh every 200 ms so the flapping is actually seen by the filter.
    guard = start_guard(keyserver, cache="200ms")
    tok = token()
    assert_passed(upstream, guard.send(SHOP, bearer(tok)), tok)
    upstream.clear()

    stop = threading.Event()

    def flap() -> None:
        moves = [lambda: keyserver.down(), lambda: keyserver.serve(KEYS_A),
                 lambda: keyserver.status(500), lambda: keyserver.garbage(),
                 lambda: keyserver.slow(0.5), lambda: keyserver.serve(KEYS_A)]
        i = 0
        while not stop.is_set():
            moves[i % len(moves)]()
            i += 1
            stop.wait(0.4)
        keyserver.serve(KEYS_A)

    statuses: list[int] = []
    lock = threading.Lock()

    def load() -> None:
        while not stop.is_set():
            r = guard.send(SHOP, bearer(tok))
            with lock:
                statuses.append(r.status)

    threads = [threading.Thread(target=flap)] + [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(8)
    stop.set()
    for t in threads:
        t.join(15)

    counts = {s: statuses.count(s) for s in set(statuses)}
    print(f"flapping: {len(statuses)} requests, statuses {counts}, "
          f"fetch_ok={stat(guard, 'fetch_ok')} fetch_failed={stat(guard, 'fetch_failed')}")
    assert len(statuses) >= 200
    assert counts == {200: len(statuses)}, counts
    assert len(upstream.received()) == len(statuses)
    assert stat(guard, "fetch_failed") >= 3
    assert stat(guard, "fetch_ok") >= 3
    assert stat(guard, "keys_in_use") == 1
    assert "keeping the last good key set" in guard.log()
