"""The harness checks itself: Envoy WITHOUT the Wasm filter in front of the
recording upstream. If these fail, no filter test result can be trusted."""

from harness import ENVOY_BIN, Envoy, Upstream, send


def test_the_pinned_envoy_is_installed_in_the_project_virtualenv():
    assert ENVOY_BIN.is_file(), "run `make setup`"


def test_the_upstream_records_duplicate_and_oddly_spelled_headers_in_order():
    with Upstream() as up:
        r = send(up.port, "/a?b=1&c=2", [("X-Dup", "1"), ("x-dup", "2"), ("X_Under_Score", "u")])
        assert r.status == 200
        rec = up.only()
        assert rec.path == "/a?b=1&c=2"
        assert rec.values("x-dup") == ["1", "2"]
        assert ("X_Under_Score", "u") in rec.headers
        assert r.json()["path"] == "/a?b=1&c=2"


def test_requests_reach_the_recording_upstream_through_envoy_without_the_filter():
    with Upstream() as up, Envoy(up.port, None) as envoy:
        r = envoy.send("/shop/item?x=1&y=2", [("Cookie", "a=1; b=2"), ("X-Dup", "1"), ("X-Dup", "2")],
                       method="POST", body=b"hello")
        assert r.status == 200
        rec = up.only()
        assert rec.method == "POST"
        assert rec.path == "/shop/item?x=1&y=2"
        assert rec.body == b"hello"
        assert rec.values("x-dup") == ["1", "2"]
        assert rec.cookies() == [("a", "1"), ("b", "2")]
        assert envoy.counter("http.ingress_http.downstream_rq_2xx") >= 1
        assert "starting main dispatch loop" in envoy.log()


def test_envoy_keeps_underscored_header_names_so_the_filter_must_strip_them():
    # Envoy's default headers_with_underscores_action is ALLOW: the filter,
    # not Envoy, is what keeps X_Mpass_* away from the upstream.
    with Upstream() as up, Envoy(up.port, None) as envoy:
        assert envoy.send("/", [("X_Mpass_Uid", "spoof")]).status == 200
        assert up.only().values("x_mpass_uid") == ["spoof"]


def test_envoy_stops_and_frees_its_listener():
    with Upstream() as up:
        envoy = Envoy(up.port, None).start()
        assert envoy.serving()
        proc = envoy.proc
        envoy.stop()
        assert proc.poll() is not None
        assert not envoy._listener_accepts()
