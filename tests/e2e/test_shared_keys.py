"""Keys once per Envoy (issue 16): with ``--concurrency 2`` (three VMs: the
main thread's and two workers'), the VMs share one issuer's key fetches
through proxy-wasm shared data. Judged by the key server's request count,
by what clients got and what the upstream received.

Requests go out on new connections each, so both workers serve some
(checked with Envoy's per-worker listener counters).
"""

from __future__ import annotations

import concurrent.futures
import secrets
from typing import Any

import pytest

from harness import Envoy, static_cluster
from jwks_server import JWKS_PATH, KeyServer
from test_remote_keys import (KEYS_A, KEYS_AB, SHOP, assert_keys_unavailable, bearer,
                              remote_config, token, until)

WORKERS = 2


@pytest.fixture
def keyserver():
    ks = KeyServer()
    yield ks
    ks.stop()


@pytest.fixture
def start_guard(upstream, tmp_path):
    started: list[Envoy] = []

    def start(server: KeyServer, **kw: Any) -> Envoy:
        envoy = Envoy(upstream.port, remote_config(server, **kw), concurrency=WORKERS,
                      workdir=tmp_path / str(len(started)),
                      clusters=[static_cluster("jwks", server.port, connect_timeout="0.25s")])
        started.append(envoy)
        return envoy.start()

    yield start
    for envoy in started:
        envoy.stop()


def many(guard: Envoy, tokens: list[str]) -> list:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda t: guard.send(SHOP, bearer(t)), tokens))


def workers_served(guard: Envoy) -> list[int]:
    stats = guard.stats()
    return [sum(int(v) for k, v in stats.items()
                if k.startswith("listener.") and k.endswith(f"worker_{w}.downstream_cx_total"))
            for w in range(WORKERS)]


def test_three_vms_fetch_the_key_set_once_and_every_worker_uses_it(keyserver, start_guard,
                                                                   upstream):
    keyserver.serve(KEYS_A)
    guard = start_guard(keyserver)
    tok = token("rsa-a")
    answers = many(guard, [tok] * 40)
    assert {r.status for r in answers} == {200}, [r.body for r in answers if r.status != 200][:3]
    assert all(rec.values("authorization") == [] for rec in upstream.received())
    assert all(n > 0 for n in workers_served(guard)), workers_served(guard)
    # Every VM has decided with the key set (or adopted it): still one fetch.
    assert until(lambda: guard.log().count("adopted from another VM") >= 2), guard.log_tail()
    assert keyserver.count(JWKS_PATH) == 1


def test_a_rotation_is_fetched_once_and_seen_by_both_workers(keyserver, start_guard, upstream):
    keyserver.serve(KEYS_A)
    guard = start_guard(keyserver)
    assert {r.status for r in many(guard, [token("rsa-a")] * 8)} == {200}
    before = keyserver.count(JWKS_PATH)
    keyserver.serve(KEYS_AB)
    tok_b = token("rsa-b")
    answers = many(guard, [tok_b] * 40)
    assert {r.status for r in answers} == {200}, [r.body for r in answers if r.status != 200][:3]
    assert all(n > 0 for n in workers_served(guard))
    assert keyserver.count(JWKS_PATH) == before + 1


def test_an_unknown_kid_flood_across_both_workers_refetches_at_most_once(keyserver, start_guard,
                                                                        upstream):
    keyserver.serve(KEYS_A)
    guard = start_guard(keyserver, key_fetch={"refetch_interval": "600s"})
    assert {r.status for r in many(guard, [token("rsa-a")] * 8)} == {200}
    before = keyserver.count(JWKS_PATH)
    upstream.clear()
    tokens = [token("rsa-b", kid=f"random-{secrets.token_hex(6)}") for _ in range(40)]
    answers = many(guard, tokens)
    assert {r.status for r in answers} == {401}
    assert {r.json()["reason"] for r in answers} == {"unknown_key"}
    assert upstream.received() == []
    assert all(n > 0 for n in workers_served(guard))
    assert keyserver.count(JWKS_PATH) - before <= 1


def test_an_issuer_down_at_start_is_a_503_on_every_worker(keyserver, start_guard, upstream):
    keyserver.down()
    guard = start_guard(keyserver)
    for resp in many(guard, [token("rsa-a")] * 6):
        assert_keys_unavailable(upstream, resp)
    assert all(n > 0 for n in workers_served(guard))
