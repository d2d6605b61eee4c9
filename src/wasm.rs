//! The proxy-wasm glue: host calls only, no business rules.
//!
//! It reads the request headers, asks [`Engine::handle`] for a decision and
//! carries it out: remove, then set, then either continue or answer locally.
//! Remote key sets are fetched by the root context (timer, `dispatch_http_call`
//! through the configured cluster); requests that must wait for keys are
//! parked and decided again from the root context once the keys change or
//! their wait ends.
//!
//! The engine's counters (decisions, releases, cache, ...) are added up in
//! the VM and handed to the host on the root's tick, every 100 ms (and when
//! the VM stops or its configuration is replaced): one host call per counter
//! that moved instead of about a dozen per request. A scrape therefore lags
//! by at most one tick. With `audit.flush_interval` set, audit lines are
//! gathered the same way and logged together, at most that long after the
//! first of them; without it (the default) each line is logged at once.
//!
//! Host calls go through `proxy_wasm::hostcalls` (which return `Result`)
//! rather than the SDK's trait helpers (which unwrap), so a host error never
//! becomes a trap. Header values are read as bytes: the SDK's string map
//! reader panics on a non-UTF-8 value, which a client controls.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

use crate::config::Config;
use crate::engine::counters::{
    decision_time_name, issuer_fetch_name, issuer_key_set_age_name, issuer_keys_in_use_name,
    registry_fetch_name, registry_snapshot_age_name,
};
use crate::engine::{CounterId, Decision, Engine, Outcome, Pushed, Request, VmState, WaitFor};
use crate::jwks::{Fetched, IssuerId, Step};
use crate::registry_source::{Event as RegistryEvent, Step as RegistryStep};
use crate::wasm_record::{declare_decision_property, publish_decision};

const METRIC_PREFIX: &str = "mpass_guard.";
/// Timer granularity for fetch scheduling and parked-request deadlines.
const TICK: Duration = Duration::from_millis(100);

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    std::panic::set_hook(Box::new(|info| {
        // Location only: a panic message could quote data it was handling.
        let place = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let _ = hostcalls::log(LogLevel::Critical, &format!("mpass-guard: panic at {place}"));
    }));
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(Root { context_id, ..Root::default() })
    });
}}

fn log(level: LogLevel, msg: &str) {
    let _ = hostcalls::log(level, msg);
}

/// Microseconds from the host clock (for the decision-time histogram).
fn now_us() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Counter and gauge ids, defined lazily: with many providers most
/// combinations of provider, outcome and attribute never occur.
#[derive(Default)]
struct Metrics {
    ids: RefCell<HashMap<String, u32>>,
    /// Host metric ids of the engine's interned counters, by index.
    counters: RefCell<Vec<Option<u32>>>,
    /// Increments not yet handed to the host, by index.
    pending: RefCell<Vec<u64>>,
}

impl Metrics {
    /// Counts one for a counter, handed to the host by the next [`Metrics::flush`].
    fn count(&self, counter: CounterId) {
        let mut pending = self.pending.borrow_mut();
        if pending.len() <= counter.index() {
            pending.resize(counter.index() + 1, 0);
        }
        if let Some(n) = pending.get_mut(counter.index()) {
            *n = n.saturating_add(1);
        }
    }

    /// Hands the gathered increments to the host. The buffer is kept (its
    /// length is the number of counters ever counted), only zeroed.
    fn flush(&self, state: &VmState) {
        let mut pending = self.pending.borrow_mut();
        for (index, n) in pending.iter_mut().enumerate() {
            if *n > 0 {
                self.add(state, CounterId::from_index(index), *n);
                *n = 0;
            }
        }
    }

    /// Adds to one of the engine's counters, defining it on first use.
    fn add(&self, state: &VmState, counter: CounterId, n: u64) {
        let known = self
            .counters
            .borrow()
            .get(counter.index())
            .copied()
            .flatten();
        let id = match known {
            Some(id) => id,
            None => {
                let Some(name) = state.counter_name(counter) else {
                    return;
                };
                let Some(id) = self.id(&name, MetricType::Counter) else {
                    return;
                };
                let mut ids = self.counters.borrow_mut();
                if ids.len() <= counter.index() {
                    ids.resize(counter.index() + 1, None);
                }
                if let Some(slot) = ids.get_mut(counter.index()) {
                    *slot = Some(id);
                }
                id
            }
        };
        let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
    }

    fn id(&self, name: &str, kind: MetricType) -> Option<u32> {
        let mut ids = self.ids.borrow_mut();
        if let Some(id) = ids.get(name) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(kind, &format!("{METRIC_PREFIX}{name}")).ok()?;
        ids.insert(name.to_owned(), id);
        Some(id)
    }

    fn increment(&self, name: &str) {
        if let Some(id) = self.id(name, MetricType::Counter) {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    fn gauge(&self, name: &str, value: u64) {
        if let Some(id) = self.id(name, MetricType::Gauge) {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}

/// State shared by the root context and every HTTP context of one VM.
struct Shared {
    engine: Rc<Engine>,
    /// Never borrowed across a host call that could re-enter the VM.
    state: RefCell<VmState>,
    metrics: Metrics,
    /// Whether the decision property is declared on this root (records are
    /// written only then: undeclared, Envoy would keep them as bytes).
    declared: bool,
    /// `decision_time_us.stat_prefix=<sp>`.
    decision_time: String,
    /// Its host metric id, once defined.
    decision_time_id: Cell<Option<u32>>,
    /// Userinfo calls in flight: call token -> (session key, size cap,
    /// the HTTP context that made it and receives its response).
    userinfo_calls: RefCell<HashMap<u32, (u64, usize, u32)>>,
}

impl Shared {
    /// Queues one audit line, or logs it at once when batching is off or
    /// the batch is full.
    fn audit(&self, line: &crate::engine::Audit, now: u64) {
        let pushed = self.state.borrow_mut().audit.push(line, now);
        match pushed {
            Pushed::Log(line) => log(LogLevel::Info, &line),
            Pushed::Flush => self.flush_audit(),
            Pushed::Queued => {}
        }
    }

    /// Hands the batch to the host: the pending audit lines in one log call
    /// (each line of the message is one JSON record), then the counters.
    fn flush_audit(&self) {
        let mut state = self.state.borrow_mut();
        let lines = state.audit.take();
        if !lines.is_empty() {
            log(LogLevel::Info, &lines);
        }
        self.metrics.flush(&state);
    }

    /// Flushes the batch when the batching policy says it is due.
    fn flush_audit_if_due(&self, now: u64) {
        let due = self.state.borrow_mut().audit.due(now);
        if due {
            self.flush_audit();
        }
    }

    /// One value of the decision-time histogram, through the metric id
    /// defined on first use (no name lookup per request).
    fn record_decision_time(&self, us: u64) {
        let id = match self.decision_time_id.get() {
            Some(id) => id,
            None => {
                let Some(id) = self.metrics.id(&self.decision_time, MetricType::Histogram) else {
                    return;
                };
                self.decision_time_id.set(Some(id));
                id
            }
        };
        let _ = hostcalls::record_metric(id, us);
    }

    /// Decides for the current effective HTTP context and carries it out.
    /// Returns `None` when the request was parked.
    fn run(&self, context_id: u32, resumed: bool) -> Option<Action> {
        let started_us = now_us();
        // One clock read for the decision's `now` and the histogram's start:
        // the same host clock a second read would give, a host call less.
        let now = started_us / 1000;
        // Values as bytes: the rewrites keep them byte for byte; the text
        // view (lossy only for bytes that are not UTF-8) is for matching,
        // and is the bytes themselves, moved, when they are all UTF-8.
        let (headers, raw) = match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
            Ok(list) => crate::engine::text_headers(list),
            Err(_) => {
                respond(500, &[], br#"{"error":"internal"}"#);
                return Some(Action::Pause);
            }
        };
        let route_name = if self.engine.uses_route_names() {
            hostcalls::get_property(vec!["xds", "route_name"])
                .ok()
                .flatten()
                .and_then(|b| String::from_utf8(b).ok())
        } else {
            None
        };
        let outcome = {
            let mut state = self.state.borrow_mut();
            let outcome = self.engine.handle(
                &Request {
                    headers: &headers,
                    route_name: route_name.as_deref(),
                    raw: &raw,
                },
                now,
                &mut state,
                resumed,
            );
            if let Decision::Wait(wait) = &outcome.decision {
                state.park(context_id, wait.clone(), now);
                let calls = state.take_userinfo_calls();
                drop(state);
                if self.dispatch_userinfo(calls, context_id, now) {
                    return None;
                }
                // The call could not be made: decide again now, as a
                // request whose wait ended (503 userinfo_unavailable).
                self.state.borrow_mut().parked.forget(context_id);
                return self.run(context_id, true);
            }
            outcome
        };
        let action = self.carry_out(outcome, now);
        let took = now_us().saturating_sub(started_us);
        self.record_decision_time(took);
        Some(action)
    }

    /// Makes the userinfo calls the engine queued, from the current HTTP
    /// context (its `on_http_call_response` receives the answer). A call
    /// that cannot be dispatched settles its session as failed; returns
    /// false when one did.
    fn dispatch_userinfo(
        &self,
        calls: Vec<crate::engine::Call>,
        context_id: u32,
        now: u64,
    ) -> bool {
        let mut all_made = true;
        for call in calls {
            self.metrics.count(call.counter);
            match hostcalls::dispatch_http_call(
                &call.cluster,
                call.headers(),
                None,
                vec![],
                Duration::from_millis(call.timeout_ms),
            ) {
                Ok(token) => {
                    self.userinfo_calls
                        .borrow_mut()
                        .insert(token, (call.key, call.max_response_bytes, context_id));
                }
                Err(_) => {
                    log(
                        LogLevel::Warn,
                        &format!(
                            "mpass-guard: userinfo call not dispatched (cluster {})",
                            call.cluster
                        ),
                    );
                    self.settle_userinfo(call.key, &crate::userinfo::Response::Failed, now);
                    all_made = false;
                }
            }
        }
        all_made
    }

    /// Hands a userinfo response to the engine; counts and logs a failure
    /// (its reason only).
    fn settle_userinfo(&self, key: u64, response: &crate::userinfo::Response, now: u64) {
        let Ok(mut state) = self.state.try_borrow_mut() else {
            return;
        };
        let (counters, failure) = self
            .engine
            .userinfo_response(key, response, now, &mut state);
        for c in counters {
            self.metrics.count(c);
        }
        if let Some(f) = failure {
            log(
                LogLevel::Warn,
                &format!("mpass-guard: userinfo call failed: {}", f.reason()),
            );
        }
    }

    /// A userinfo call's answer arrived (at the HTTP context that made the
    /// call, or at the root context when the call was made while it was
    /// deciding parked requests): settles the session and resumes the
    /// requests waiting for it; `current` is made effective again. Returns
    /// false when `token` is not a userinfo call.
    fn userinfo_answered(&self, token: u32, body_size: usize, current: u32) -> bool {
        let Some((key, max, _)) = self.userinfo_calls.borrow_mut().remove(&token) else {
            return false;
        };
        let now = now_ms();
        let header = |name: &str| {
            hostcalls::get_map_value(MapType::HttpCallResponseHeaders, name)
                .ok()
                .flatten()
        };
        let status = header(":status").and_then(|s| s.parse::<u16>().ok());
        let response = match status {
            None => crate::userinfo::Response::Failed,
            Some(_) if body_size > max => crate::userinfo::Response::TooLarge,
            Some(status) => crate::userinfo::Response::Answer {
                status,
                content_type: header("content-type"),
                body: if body_size == 0 {
                    Vec::new()
                } else {
                    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                        .ok()
                        .flatten()
                        .unwrap_or_default()
                },
            },
        };
        self.settle_userinfo(key, &response, now);
        self.release_parked(current, Some(WaitFor::Userinfo(key)), now);
        true
    }

    /// Writes the decision record to filter state, once per decision. A
    /// failure is logged without the record.
    fn publish(&self, outcome: &Outcome) {
        if !self.declared {
            return;
        }
        if let Err(status) = publish_decision(&outcome.record_bytes()) {
            log(
                LogLevel::Warn,
                &format!("mpass-guard: decision record not written (host status {status})"),
            );
        }
    }

    fn carry_out(&self, outcome: Outcome, now: u64) -> Action {
        for counter in outcome.counter_ids() {
            self.metrics.count(counter);
        }
        // Before any local reply: the access log reads the record either way.
        self.publish(&outcome);
        if let Some(audit) = outcome.audit.as_ref().filter(|_| self.engine.audit_log()) {
            self.audit(audit, now);
        }
        if let Some(stripped) = outcome
            .stripped
            .as_ref()
            .filter(|_| self.engine.audit_log())
        {
            let secs = i64::try_from(now / 1000).unwrap_or(0);
            log(LogLevel::Info, &stripped.to_json(secs));
        }
        let decision = &outcome.decision;
        if let Some(resp) = decision.response() {
            let headers: Vec<(&str, &str)> = resp
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            respond(u32::from(resp.status), &headers, resp.body.as_bytes());
            return Action::Pause;
        }
        let mut failed = false;
        for name in decision.removals() {
            failed |= hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None).is_err();
        }
        for (name, value) in decision.byte_headers() {
            failed |=
                hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, Some(value))
                    .is_err();
        }
        for (name, value) in decision.headers() {
            failed |=
                hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value)).is_err();
        }
        if failed {
            // A header we had to remove or set may still be there: never let
            // such a request through.
            respond(500, &[], br#"{"error":"internal"}"#);
            return Action::Pause;
        }
        Action::Continue
    }

    /// Decides again for the parked requests the queue releases: those
    /// waiting for `ready`, and every one whose deadline has passed; then
    /// makes `root_id` (the calling context) effective again.
    fn release_parked(&self, root_id: u32, ready: Option<WaitFor>, now: u64) {
        let go = self.state.borrow_mut().parked.release(ready.as_ref(), now);
        for context_id in go {
            if hostcalls::set_effective_context(context_id).is_err() {
                continue; // the stream is gone
            }
            if let Some(Action::Continue) = self.run(context_id, true) {
                let _ = hostcalls::resume_http_request();
            }
        }
        let _ = hostcalls::set_effective_context(root_id);
    }
}

#[derive(Default)]
struct Root {
    context_id: u32,
    shared: Option<Rc<Shared>>,
    /// In-flight key fetches: call token -> (issuer index, step).
    calls: HashMap<u32, (IssuerId, Step)>,
    /// Keys once per Envoy: lease, generation and kid budget in shared data.
    keys: crate::wasm_keys::SharedKeys,
    /// In-flight registry calls: call token -> step.
    registry_calls: HashMap<u32, RegistryStep>,
}

impl Context for Root {
    fn on_done(&mut self) -> bool {
        // The VM is stopping: write what the audit batch still holds.
        if let Some(shared) = &self.shared {
            shared.flush_audit();
        }
        true
    }

    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        if let Some(step) = self.registry_calls.remove(&token) {
            self.on_registry_response(&shared, &step, body_size);
            return;
        }
        let Some((issuer, step)) = self.calls.remove(&token) else {
            // A userinfo call made while the root context was resuming
            // parked requests: its answer is routed here.
            shared.userinfo_answered(token, body_size, self.context_id);
            return;
        };
        let now = now_ms();
        let max = shared
            .state
            .borrow()
            .keys
            .policy(issuer)
            .map_or(0, |p| p.max_response_bytes);
        let fetched = fetched_response(body_size, max);
        // A good key set document is published for the other VMs.
        let document = match (&step, &fetched) {
            (Step::Jwks(_), Fetched::Response { status: 200, body }) => Some(body.clone()),
            _ => None,
        };
        let ready = {
            let mut state = shared.state.borrow_mut();
            let Some(remote) = state.keys.get_mut(issuer) else {
                return;
            };
            let event = remote.on_fetched(now, &step, fetched);
            let sp = shared.engine.stat_prefix();
            if event.settled {
                let good = document.as_deref().filter(|_| event.ok);
                self.keys.settled(sp, issuer, remote, now, good);
            }
            shared
                .metrics
                .increment(&issuer_fetch_name(sp, &remote.issuer, event.ok));
            shared.metrics.gauge(
                &issuer_keys_in_use_name(sp, &remote.issuer),
                remote.key_count() as u64,
            );
            log(
                if event.ok {
                    LogLevel::Info
                } else {
                    LogLevel::Warn
                },
                &format!("mpass-guard: {}", event.message),
            );
            // After a discovery success the key set fetch is still to come:
            // requests waiting for a new kid must wait for it too.
            event.settled
                && matches!(
                    remote.availability(now),
                    crate::jwks::Availability::Ready(_)
                )
        };
        // Discovery leads straight on to the key set fetch.
        self.start_due_fetches(&shared, now);
        if ready {
            shared.release_parked(self.context_id, Some(WaitFor::Keys(issuer)), now);
        }
    }
}

/// Reads the response of an HTTP call that just completed, within `max`
/// bytes.
fn fetched_response(body_size: usize, max: usize) -> Fetched {
    let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .and_then(|s| s.parse::<u16>().ok());
    match status {
        None => Fetched::Failed,
        Some(_) if body_size > max => Fetched::TooLarge,
        Some(status) => {
            let body = if body_size == 0 {
                Vec::new()
            } else {
                hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            };
            Fetched::Response { status, body }
        }
    }
}

impl Root {
    /// One registry document arrived (or failed): the engine takes it; a
    /// refresh that ends is counted and logged, and requests waiting for a
    /// first snapshot resume once there is one.
    fn on_registry_response(&mut self, shared: &Shared, step: &RegistryStep, body_size: usize) {
        let now = now_ms();
        let max = shared
            .state
            .borrow()
            .registry
            .as_ref()
            .map_or(0, |r| r.settings.policy.max_response_bytes);
        let fetched = fetched_response(body_size, max);
        let event = {
            let mut state = shared.state.borrow_mut();
            shared
                .engine
                .registry_fetched(&mut state, now, step, fetched)
        };
        let Some(event) = event else {
            return;
        };
        registry_outcome(shared, &event, "");
        if event.ok {
            shared.release_parked(self.context_id, Some(WaitFor::Registry), now);
        }
    }

    fn start_registry_fetch(&mut self, shared: &Shared, now: u64) {
        let failed = {
            let mut state = shared.state.borrow_mut();
            let Some(source) = state.registry.as_mut() else {
                return;
            };
            let Some(steps) = source.due(now) else {
                return;
            };
            let cluster = source.settings.cluster.clone();
            let timeout = Duration::from_millis(source.settings.policy.timeout_ms);
            let mut failed = None;
            for step in steps {
                // The credentials travel in this call only; never logged.
                let mut headers: Vec<(&str, &str)> = source.headers(&step).to_vec();
                headers.push(("user-agent", "mpass-guard"));
                match hostcalls::dispatch_http_call(&cluster, headers, None, vec![], timeout) {
                    Ok(token) => {
                        self.registry_calls.insert(token, step);
                    }
                    Err(_) => {
                        // This refresh has ended; a result of the other
                        // document is then ignored.
                        failed = Some((step, cluster));
                        break;
                    }
                }
            }
            failed
        };
        if let Some((step, cluster)) = failed {
            let event = {
                let mut state = shared.state.borrow_mut();
                shared
                    .engine
                    .registry_fetched(&mut state, now, &step, Fetched::Failed)
            };
            if let Some(event) = event {
                registry_outcome(
                    shared,
                    &event,
                    &format!(" (could not dispatch to cluster {cluster})"),
                );
            }
        }
    }

    fn start_due_fetches(&mut self, shared: &Shared, now: u64) {
        self.start_registry_fetch(shared, now);
        let mut state = shared.state.borrow_mut();
        for (i, remote) in state.keys.remote_mut() {
            let Some(step) = remote.due(now) else {
                continue;
            };
            if !self
                .keys
                .may_fetch(shared.engine.stat_prefix(), remote, now)
            {
                // Another VM of this Envoy fetches; the tick adopts its result.
                continue;
            }
            let target = match &step {
                Step::Discovery(t) | Step::Jwks(t) => t.clone(),
            };
            let headers = vec![
                (":method", "GET"),
                (":path", target.path.as_str()),
                (":authority", target.authority.as_str()),
                ("accept", "application/json"),
                ("user-agent", "mpass-guard"),
            ];
            match hostcalls::dispatch_http_call(
                &remote.cluster,
                headers,
                None,
                vec![],
                Duration::from_millis(remote.policy.timeout_ms),
            ) {
                Ok(token) => {
                    self.calls.insert(token, (i, step));
                }
                Err(_) => {
                    let event = remote.on_fetched(now, &step, Fetched::Failed);
                    self.keys
                        .settled(shared.engine.stat_prefix(), i, remote, now, None);
                    shared.metrics.increment(&issuer_fetch_name(
                        shared.engine.stat_prefix(),
                        &remote.issuer,
                        false,
                    ));
                    log(
                        LogLevel::Warn,
                        &format!(
                            "mpass-guard: {} (could not dispatch to cluster {})",
                            event.message, remote.cluster
                        ),
                    );
                }
            }
        }
    }
}

/// Counts and logs the end of one registry refresh: the message never
/// holds a credential or a document's content, only counts, statuses and
/// organisation OIDs or client ids in warnings.
fn registry_outcome(shared: &Shared, event: &RegistryEvent, suffix: &str) {
    let sp = shared.engine.stat_prefix();
    shared.metrics.increment(&registry_fetch_name(sp, event.ok));
    log(
        if event.ok {
            LogLevel::Info
        } else {
            LogLevel::Warn
        },
        &format!("mpass-guard: {}{suffix}", event.message),
    );
    for w in &event.warnings {
        log(LogLevel::Warn, &format!("mpass-guard: {w}"));
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        true
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        // Defined (at 0) on every configure, so `increase()` sees the first one.
        let rejected = hostcalls::define_metric(
            MetricType::Counter,
            &format!("{METRIC_PREFIX}config_rejected"),
        )
        .ok();
        let serving = self.shared.is_some();
        let refuse = || {
            // A refusal while a previous configuration keeps serving.
            if let (true, Some(id)) = (serving, rejected) {
                let _ = hostcalls::increment_metric(id, 1);
            }
            false
        };
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(b)) => b,
            _ => {
                log(
                    LogLevel::Error,
                    "mpass-guard: configuration rejected: no plugin configuration",
                );
                return refuse();
            }
        };
        match Config::load(&bytes, &|name| std::env::var(name).ok()) {
            Ok(config) => {
                for w in &config.warnings {
                    log(LogLevel::Warn, &format!("mpass-guard: {w}"));
                }
                let engine = Engine::new(config);
                let (issuers, providers) = engine.sizes();
                log(
                    LogLevel::Info,
                    &format!(
                        "mpass-guard {}: configuration loaded: {issuers} issuer(s), {providers} provider(s), stat_prefix {}, rsa_verifier {}, ec_verifier {}, eddsa_verifier {}",
                        crate::VERSION,
                        engine.stat_prefix(),
                        engine.rsa_verifier().name(),
                        engine.ec_verifier().name(),
                        engine.eddsa_verifier().name()
                    ),
                );
                let version = crate::VERSION.replace('.', "_");
                if let Ok(id) = hostcalls::define_metric(
                    MetricType::Gauge,
                    &format!("{METRIC_PREFIX}build_info.version={version}"),
                ) {
                    let _ = hostcalls::record_metric(id, 1);
                }
                let declared = declare_decision_property();
                let decision_time = decision_time_name(engine.stat_prefix());
                let state = engine.new_state();
                // Inline keys' verification tables now, not on a user's
                // first token (remote sets: on the tick after they arrive).
                engine.precompute_key_tables(&state.keys);
                // A new configuration replaces the state: write out what the
                // previous one still holds.
                if let Some(previous) = &self.shared {
                    previous.flush_audit();
                }
                self.shared = Some(Rc::new(Shared {
                    engine: Rc::new(engine),
                    state: RefCell::new(state),
                    metrics: Metrics::default(),
                    declared,
                    decision_time,
                    decision_time_id: Cell::new(None),
                    userinfo_calls: RefCell::new(HashMap::new()),
                }));
                self.calls.clear();
                self.registry_calls.clear();
                // Always: the tick hands the counters to the host.
                let _ = hostcalls::set_tick_period(TICK);
                true
            }
            Err(e) => {
                log(
                    LogLevel::Error,
                    &format!("mpass-guard: configuration rejected: {e}"),
                );
                refuse()
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let now = now_ms();
        shared.flush_audit_if_due(now);
        // Key sets another VM of this Envoy fetched: adopted within a tick.
        let mut adopted = Vec::new();
        {
            let mut state = shared.state.borrow_mut();
            let sp = shared.engine.stat_prefix();
            for (i, remote) in state.keys.remote_mut() {
                if let Some((ok, message)) = self.keys.poll(sp, i, remote) {
                    log(
                        if ok { LogLevel::Info } else { LogLevel::Warn },
                        &format!("mpass-guard: {message}"),
                    );
                    if ok {
                        shared.metrics.gauge(
                            &issuer_keys_in_use_name(sp, &remote.issuer),
                            remote.key_count() as u64,
                        );
                        adopted.push(i);
                    }
                }
            }
        }
        for i in adopted {
            shared.release_parked(self.context_id, Some(WaitFor::Keys(i)), now);
        }
        // Tables of key sets fetched or adopted since the last tick (a
        // check per key once they are built).
        shared
            .engine
            .precompute_key_tables(&shared.state.borrow().keys);
        shared.metrics.flush(&shared.state.borrow());
        self.start_due_fetches(&shared, now);
        {
            let state = shared.state.borrow();
            if let Some(age) = state.registry.as_ref().and_then(|r| r.age_secs(now)) {
                shared.metrics.gauge(
                    &registry_snapshot_age_name(shared.engine.stat_prefix()),
                    age,
                );
            }
            for (_, remote) in state.keys.remote() {
                if let Some(age) = remote.age_secs(now) {
                    shared.metrics.gauge(
                        &issuer_key_set_age_name(shared.engine.stat_prefix(), &remote.issuer),
                        age,
                    );
                }
            }
        }
        let parked = !shared.state.borrow().parked.is_empty();
        if parked {
            shared.release_parked(self.context_id, None, now);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            context_id,
            shared: self.shared.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    context_id: u32,
    /// `None` only if Envoy runs streams without a configuration, which it
    /// should not; such requests are refused (fail closed).
    shared: Option<Rc<Shared>>,
}

impl Context for Http {
    fn on_done(&mut self) -> bool {
        if let Some(shared) = &self.shared {
            // `try_`: a stream that ends inside a host call made while the
            // state is borrowed must not trap the VM; a request left parked
            // is skipped when its context is gone.
            if let Ok(mut state) = shared.state.try_borrow_mut() {
                state.parked.forget(self.context_id);
            }
            // A call this stream made ends with it (Envoy cancels it): its
            // session fails, and requests waiting for it get a 503 at their
            // deadline rather than never.
            let lost: Vec<u64> = {
                let Ok(mut calls) = shared.userinfo_calls.try_borrow_mut() else {
                    return true;
                };
                let tokens: Vec<u32> = calls
                    .iter()
                    .filter(|(_, (_, _, ctx))| *ctx == self.context_id)
                    .map(|(t, _)| *t)
                    .collect();
                tokens
                    .into_iter()
                    .filter_map(|t| calls.remove(&t).map(|(key, _, _)| key))
                    .collect()
            };
            for key in lost {
                shared.settle_userinfo(key, &crate::userinfo::Response::Failed, now_ms());
            }
        }
        true
    }

    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        shared.userinfo_answered(token, body_size, self.context_id);
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        #[cfg(feature = "test-trap")]
        trap_if_asked();
        let Some(shared) = self.shared.clone() else {
            respond(503, &[], br#"{"error":"not_configured"}"#);
            return Action::Pause;
        };
        shared.run(self.context_id, false).unwrap_or(Action::Pause)
    }

    /// Request trailers (HTTP/2) get the same sanitising as headers:
    /// identity trailers and every trailer holding a token are removed.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let Some(shared) = self.shared.clone() else {
            return Action::Continue;
        };
        let Ok(trailers) = hostcalls::get_map_bytes(MapType::HttpRequestTrailers) else {
            let _ = hostcalls::reset_http_request();
            return Action::Pause;
        };
        let remove = {
            let state = shared.state.borrow();
            let (remove, counters) = shared.engine.trailers(&trailers, &state);
            for counter in counters {
                shared.metrics.count(counter);
            }
            remove
        };
        if remove_trailers(&remove) {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

/// Removes request trailers; on a failure (a trailer that had to go may
/// still be there) the stream is reset and `false` returned.
fn remove_trailers(remove: &[String]) -> bool {
    for name in remove {
        if hostcalls::set_map_value(MapType::HttpRequestTrailers, name, None).is_err() {
            let _ = hostcalls::reset_http_request();
            return false;
        }
    }
    true
}

/// Test builds only (cargo feature `test-trap`): a Wasm trap, as a bug would
/// cause one, when the request carries `x-mpass-guard-test-trap`.
#[cfg(feature = "test-trap")]
fn trap_if_asked() {
    if let Ok(Some(_)) =
        hostcalls::get_map_value(MapType::HttpRequestHeaders, "x-mpass-guard-test-trap")
    {
        core::arch::wasm32::unreachable();
    }
}

fn respond(status: u32, headers: &[(&str, &str)], body: &[u8]) {
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if !all.iter().any(|(n, _)| *n == "content-type") {
        all.push(("content-type", "application/json"));
    }
    if hostcalls::send_http_response(status, all, Some(body)).is_err() {
        let _ = hostcalls::reset_http_request();
    }
}
