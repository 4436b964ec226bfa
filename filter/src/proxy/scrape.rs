//! One scrape: an HTTP context on the metrics listener.
//!
//! Two ways to get Envoy's stats. **Dispatched** (the default, and HEAD, and a scrape identical
//! to one streaming): every source, Envoy's admin included, is a dispatched call; the answers
//! are merged as they arrive and the scrape is answered with one local reply. **Streamed**
//! (`stream_envoy`): the scrape itself goes on to Envoy's admin through the router (`:path`
//! rewritten), only the apps are dispatched, and Envoy's body is rewritten piece by piece as it
//! passes (`on_http_response_body`): what the engine says is final leaves with each piece, so
//! neither Envoy nor the VM holds the whole answer. Pieces that come before the apps are all in
//! wait in the VM (the apps decide where Envoy's families may go): they are taken out of Envoy's
//! body, which passes on empty. If Envoy's body ends before the apps are in, its last piece is
//! held (paused) and, when they are, replaced by the whole answer (the listener's buffer limit
//! is the scrape's budget, so Envoy takes it). Only that last call is ever paused: after a
//! paused body call, Envoy shows the next call the buffered body, not its new piece.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};

use super::admission::{self, Waiting};
use super::body::{Body, WINDOW};
use super::inflight::{self, Join};
use super::{Plugin, counters, log, pool};
use crate::config::{STREAM_HEADER, SourceKind};
use crate::exposition::{
    FamilyFilter, FilterError, Format, LabelSet, LeadStream, Merger, Passing, SourceReport,
    SourceStats,
};
use crate::plan::{self, Failure, Route};

/// How one source fared, filled in as its answer arrives.
#[derive(Clone, Default)]
struct Outcome {
    up: bool,
    started: Option<SystemTime>,
    duration: Duration,
    merge: Duration,
    bytes: u64,
    dropped: u64,
    /// Why it failed (`meshmetrics_source_error`'s reason).
    error: Option<&'static str>,
    /// Samples it wrote (lost too if the scrape's budget leaves it out).
    samples: u64,
}

/// Up to how many bytes of small pieces a streamed scrape's end gathers per call into Envoy.
const TAIL_BATCH: usize = 64 * 1024;

pub(crate) struct Scrape {
    plugin: Rc<Plugin>,
    /// This HTTP context's id: where waiters are answered from, and how they are found.
    id: u32,
    /// Fetching for itself and the identical scrapes waiting for it; else waiting itself.
    leads: bool,
    /// Its scraper left: only its waiters are answered.
    gone: bool,
    merger: Option<Merger>,
    head: bool,
    /// Dispatch token → source index, for the answers still awaited.
    pending: HashMap<u32, usize>,
    outcomes: Vec<Outcome>,
    /// Envoy's answer streams through this context (`None`: every source is dispatched).
    stream: Option<Streaming>,
    /// Until when its answer may wait for the answering budget: its scraper's timeout.
    deadline: SystemTime,
    /// What kind of scrape it is (for answers waiting for the budget).
    kind: Option<admission::Kind>,
}

/// A streamed scrape's state of Envoy's answer.
#[derive(Default)]
struct Streaming {
    /// Envoy answered 200 in text: its body is merged. Else it is dropped (reported failed).
    usable: bool,
    /// Bytes of Envoy's body it holds for this scrape, paused, while the apps are awaited: they
    /// wait in Envoy's buffer (freed after the scrape), not in the VM's memory, which never
    /// shrinks. A paused call's size counts them.
    waiting: usize,
    /// Envoy's body passing untouched, once the apps are in (text out, no labels on Envoy's
    /// samples, no `filter`): only its `# TYPE` lines are read.
    passing: Option<Passing>,
    /// Envoy's body merged by the engine, once the apps are in (or from the first family an
    /// app shares, when it was passing).
    lead: Option<LeadStream>,
    /// Bytes of Envoy's body seen.
    seen: u64,
    /// Envoy's body ended while apps were awaited: its last call is paused until they are in.
    ended: bool,
    /// Envoy answered headers only: the scrape is answered as a local reply once the apps are in.
    headers_only: bool,
    /// The scrape was answered (the last bytes left): nothing more to do.
    done: bool,
}

fn header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

pub(crate) fn now() -> SystemTime {
    hostcalls::get_current_time().unwrap_or(SystemTime::UNIX_EPOCH)
}

fn respond(status: u32, headers: Vec<(&str, &str)>, body: Option<&[u8]>) {
    if let Err(e) = hostcalls::send_http_response(status, headers, body) {
        log(LogLevel::Error, &format!("cannot answer the scrape: {e:?}"));
    }
}

/// Answers `context` (this scrape's or one answered from it).
fn answer_as(context: u32, status: u32, headers: Vec<(&str, &str)>, body: Option<&[u8]>) {
    if hostcalls::set_effective_context(context).is_ok() {
        respond(status, headers, body);
    }
}

/// Hands `answer` to these scrapes (this one and the identical ones that waited for it), each
/// as the proxy's answering budget allows (`admission`); the rest wait for it, in order.
fn deliver(
    recipients: &[(u32, bool, SystemTime)],
    kind: admission::Kind,
    content_type: &'static str,
    answer: &Rc<pool::Kept>,
    limit: u64,
) {
    let now = now();
    let size = answer.with_bytes(|b| b.len() as u64);
    for &(context, head, deadline) in recipients {
        // A HEAD answer carries no body: nothing of it stays in Envoy.
        let admitted = head || admission::take(context, size, now, limit);
        if admitted {
            if !head {
                admission::leased(context);
            }
            answer.with_bytes(|body| {
                answer_as(
                    context,
                    200,
                    vec![("content-type", content_type)],
                    (!head).then_some(body),
                )
            });
        } else {
            let first = admission::queue(Waiting {
                context,
                head,
                content_type,
                body: Rc::clone(answer),
                deadline,
                kind: kind.clone(),
            });
            if first {
                let _ = hostcalls::set_tick_period(admission::TICK);
            }
        }
    }
}

/// The answers waiting for the budget that may leave now leave; those waiting past their
/// deadline are answered 503. Called on the root context's tick; how many still wait.
pub(crate) fn hand_over_waiting(limit: u64) -> usize {
    let (go, expired) = admission::ready(now(), limit);
    for w in &go {
        w.body.with_bytes(|body| {
            answer_as(
                w.context,
                200,
                vec![("content-type", w.content_type)],
                (!w.head).then_some(body),
            )
        });
    }
    if !expired.is_empty() {
        counters::refused("budget", expired.len() as u64);
        log(
            LogLevel::Warn,
            &format!(
                "{} answers waited for the answering budget past their deadline: answering 503",
                expired.len()
            ),
        );
    }
    for w in &expired {
        answer_as(
            w.context,
            503,
            vec![("content-type", "text/plain"), ("retry-after", "1")],
            Some(b"too much answering in progress on this proxy\n"),
        );
    }
    admission::queued()
}

impl Scrape {
    pub(crate) fn new(plugin: Rc<Plugin>, id: u32) -> Scrape {
        let n = plugin.config.sources.len();
        Scrape {
            plugin,
            id,
            leads: false,
            gone: false,
            merger: None,
            head: false,
            pending: HashMap::new(),
            outcomes: vec![Outcome::default(); n],
            stream: None,
            deadline: SystemTime::UNIX_EPOCH,
            kind: None,
        }
    }

    fn start(&mut self, head: bool, filter_text: Option<String>) -> Action {
        let filter = match filter_text.as_deref().map(FamilyFilter::new) {
            None => None,
            Some(Ok(f)) => Some(f),
            Some(Err(e)) => {
                let body = match e {
                    FilterError::TooLong(_) => format!("filter: {e}\n"),
                    FilterError::Regex(_) => format!("filter: the regex does not compile: {e}\n"),
                };
                respond(
                    400,
                    vec![("content-type", "text/plain")],
                    Some(body.as_bytes()),
                );
                return Action::Pause;
            }
        };
        // Its answer's lease ends with its connection, when the listener tells the VM of closes.
        if self.plugin.config.leases_end_on_close
            && let Some(connection) = admission::connection_id()
        {
            admission::on_connection(self.id, connection);
        }
        let accept = header("accept");
        let format = Format::negotiate(accept.as_deref());
        let arrived = now();
        let scrape_timeout = header("x-prometheus-scrape-timeout-seconds");
        self.deadline = arrived
            + scrape_timeout
                .as_deref()
                .and_then(|t| t.trim().parse::<f64>().ok())
                .filter(|t| t.is_finite() && *t > 0.0)
                .map_or(admission::MAX_WAIT, |t| {
                    Duration::from_secs_f64(t.min(3600.0))
                        .saturating_sub(Duration::from_millis(self.plugin.config.timeout_margin_ms))
                });
        // An identical answer still waiting for the budget is this scrape's too (fetched before
        // it arrived, as a flight in progress is): it waits with it, no new fetch.
        let kind = admission::Kind {
            plugin: self.plugin.id,
            format,
            filter: filter_text.clone(),
        };
        if admission::join(&kind, self.id, head, self.deadline) {
            return Action::Pause;
        }
        self.kind = Some(kind);
        // A streamed answer is handed to Envoy as it is made: it takes its lease now, sized as
        // the last answer was. Without room it is fetched and answered the dispatched way,
        // which waits for the budget.
        let limit = self.plugin.config.max_answering_bytes;
        let may_stream = self.plugin.config.stream_envoy
            && !head
            && admission::take(self.id, admission::last_answer_bytes(), arrived, limit);
        if may_stream {
            admission::leased(self.id);
        }
        match inflight::join(
            arrived,
            self.plugin.id,
            format,
            filter_text.as_deref(),
            inflight::Waiter {
                context: self.id,
                head,
                deadline: self.deadline,
            },
            may_stream,
        ) {
            Join::Lead => self.leads = true,
            Join::Stream => {
                self.leads = true;
                self.stream = Some(Streaming::default());
            }
            // Answered with the bytes of the identical scrape in flight (`finish`).
            Join::Wait => return Action::Pause,
            Join::Busy => {
                counters::refused("flights", 1);
                log(
                    LogLevel::Warn,
                    &format!(
                        "{} different scrapes in flight on this worker: answering 503",
                        inflight::MAX_FLIGHTS
                    ),
                );
                respond(
                    503,
                    vec![("content-type", "text/plain"), ("retry-after", "1")],
                    Some(b"too many different scrapes in flight\n"),
                );
                return Action::Pause;
            }
        }
        let user_agent = header("user-agent");
        let mut merger = pool::take(self.stream.is_some());
        merger.set_limits(self.plugin.config.limits());
        // Envoy's own renderer needs no validity checks; an app in first place does.
        merger.trust_lead(
            self.plugin
                .config
                .sources
                .first()
                .is_some_and(|s| s.kind == SourceKind::EnvoyAdmin),
        );
        merger.begin(format, filter);
        merger.select_lead(self.plugin.selection.clone());
        self.merger = Some(merger);
        self.head = head;

        let plugin = Rc::clone(&self.plugin);
        let config = &plugin.config;
        let margin = Duration::from_millis(config.timeout_margin_ms);
        for (i, source) in config.sources.iter().enumerate() {
            let timeout = plan::deadline(
                Duration::from_millis(source.timeout_ms),
                scrape_timeout.as_deref(),
                margin,
            );
            if i == 0 && self.stream.is_some() {
                // This request itself goes on to Envoy's admin, through the router.
                self.outcomes[0].started = Some(now());
                let path = source.request_path();
                let set = |name: &str, value: &str| {
                    let _ =
                        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
                };
                set(":path", &path);
                set(":authority", &source.authority);
                set("accept", "text/plain");
                set(STREAM_HEADER, "1");
                set(
                    "x-envoy-upstream-rq-timeout-ms",
                    &timeout.as_millis().to_string(),
                );
                continue;
            }
            let path = source.request_path();
            let mut headers = vec![
                (":method", "GET"),
                (":path", path.as_str()),
                (":authority", source.authority.as_str()),
            ];
            match source.kind {
                // Recent Envoy may answer /stats/prometheus in protobuf depending on Accept.
                SourceKind::EnvoyAdmin => headers.push(("accept", "text/plain")),
                // Only what the filter reads: a scraper that prefers protobuf (Prometheus with
                // native histograms) would otherwise get every client_golang app in protobuf.
                SourceKind::App => headers.push(("accept", format.accept_for_sources())),
            }
            if let Some(ua) = &user_agent {
                headers.push(("user-agent", ua));
            }
            if let Some(t) = &scrape_timeout {
                headers.push(("x-prometheus-scrape-timeout-seconds", t));
            }
            self.outcomes[i].started = Some(now());
            match hostcalls::dispatch_http_call(&source.cluster, headers, None, vec![], timeout) {
                Ok(token) => {
                    self.pending.insert(token, i);
                }
                Err(status) => {
                    self.fail(i, &Failure::NotDispatched(format!("{status:?}")));
                }
            }
        }
        if self.stream.is_some() {
            if self.pending.is_empty() {
                self.apps_in();
            }
            return Action::Continue;
        }
        if self.pending.is_empty() {
            self.finish();
        }
        Action::Pause
    }

    fn fail(&mut self, i: usize, why: &Failure) {
        let name = &self.plugin.config.sources[i].name;
        log(LogLevel::Warn, &format!("source {name:?} {why}"));
        self.outcomes[i].up = false;
        self.outcomes[i].error = Some(why.reason());
    }

    fn on_answer(&mut self, i: usize, body_size: usize) {
        let map = hostcalls::get_map(MapType::HttpCallResponseHeaders).unwrap_or_default();
        let get = |n: &str| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.as_str())
        };
        let judged = plan::judge(
            get(":status"),
            get("content-type"),
            body_size,
            self.plugin.config.max_body_bytes,
        );
        let outcome_started = self.outcomes[i].started.unwrap_or_else(now);
        self.outcomes[i].duration = now().duration_since(outcome_started).unwrap_or_default();
        let format = match judged {
            Ok(f) => f,
            Err(why) => return self.fail(i, &why),
        };
        let Some(merger) = self.merger.as_mut() else {
            return;
        };
        // The body is read a WINDOW at a time and merged as it comes: the module holds the
        // output and one piece, never a second copy of a 34 MB Envoy scrape, and each piece is
        // still in the CPU cache when the engine reads it.
        let merge_started = now();
        // Priority is the configured order (Envoy first), whatever order the answers come in.
        let priority = u16::try_from(i).unwrap_or(u16::MAX - 1);
        let mut reader = merger.source_at(priority, format, &self.plugin.labels[i], body_size);
        if !super::body::read_call(body_size, |piece| reader.feed(piece)) {
            // What was read is merged (valid lines are valid); the source is reported down.
            reader.finish();
            return self.fail(i, &Failure::BodyRead);
        }
        let stats = reader.finish();
        self.outcomes[i].merge = now().duration_since(merge_started).unwrap_or_default();
        self.record(i, &stats);
    }

    /// A source was read to its end: how it went.
    fn record(&mut self, i: usize, stats: &SourceStats) {
        let o = &mut self.outcomes[i];
        o.up = o.error.is_none();
        o.bytes = stats.bytes;
        o.dropped = stats.dropped();
        o.samples = stats.samples_out;
        if stats.output_limit {
            self.fail(i, &Failure::OutputLimit);
        }
        if stats.dropped() > 0 {
            let name = &self.plugin.config.sources[i].name;
            log(
                LogLevel::Debug,
                &format!(
                    "source {name:?}: {} malformed lines, {} type conflicts, {} unrepresentable",
                    stats.malformed_lines, stats.type_conflicts, stats.unrepresentable
                ),
            );
        }
    }

    fn finish(&mut self) {
        let Some(mut merger) = self.merger.take() else {
            return;
        };
        self.conclude(&mut merger);
        let content_type = merger.format().content_type();
        admission::saw_answer(merger.finish().len() as u64);
        let mut recipients: Vec<(u32, bool, SystemTime)> = Vec::new();
        if !self.gone {
            recipients.push((self.id, self.head, self.deadline));
        }
        recipients.extend(
            inflight::land(self.id)
                .iter()
                .map(|w| (w.context, w.head, w.deadline)),
        );
        let kind = self.kind.clone().unwrap_or(admission::Kind {
            plugin: self.plugin.id,
            format: Format::Text,
            filter: None,
        });
        // The merger goes back to the pool when the last scrape waiting for its bytes is answered
        // (now, unless some wait for the budget).
        let answer = Rc::new(pool::Kept::new(merger, self.stream.is_some()));
        deliver(
            &recipients,
            kind,
            content_type,
            &answer,
            self.plugin.config.max_answering_bytes,
        );
        let _ = hostcalls::set_effective_context(self.id);
    }

    /// The sources' outcomes are all known: reports them in the scrape's own families.
    fn conclude(&mut self, merger: &mut Merger) {
        let plugin = Rc::clone(&self.plugin);
        // Families are bound in priority order now: the true conflicts each source lost, and the
        // sources the scrape's budget left out.
        merger.resolve();
        for i in 0..self.outcomes.len() {
            if u16::try_from(i).is_ok_and(|p| merger.over_budget(p)) && self.outcomes[i].up {
                self.fail(i, &Failure::OutputLimit);
                let o = &mut self.outcomes[i];
                o.dropped += std::mem::take(&mut o.samples);
            }
        }
        let reports: Vec<SourceReport<'_>> = plugin
            .config
            .sources
            .iter()
            .zip(&self.outcomes)
            .enumerate()
            .map(|(i, (s, o))| {
                let conflicts =
                    u16::try_from(i).map_or(0, |p| merger.conflicts(p) + merger.invalid(p));
                SourceReport {
                    name: &s.name,
                    up: o.up,
                    duration_seconds: o.duration.as_secs_f64(),
                    merge_seconds: o.merge.as_secs_f64(),
                    bytes: o.bytes,
                    dropped_total: counters::add(&s.name, o.dropped + conflicts),
                    error: o.error,
                }
            })
            .collect();
        merger.add_self_metrics(&reports, &plugin.self_labels);
        // Pages of 64 KiB; this code only builds for wasm32 (`proxy/` is wasm-only).
        let memory = core::arch::wasm32::memory_size(0) as u64 * 65_536;
        merger.add_vm_memory(memory, &plugin.self_labels);
        merger.add_refused(
            counters::refused("budget", 0),
            counters::refused("flights", 0),
            &plugin.self_labels,
        );
        if plugin.config.otel.is_some() {
            merger.add_otel(&super::otel::stats(), &plugin.self_labels);
        }
    }
}

/// Envoy's answer passing through (`stream_envoy`).
impl Scrape {
    /// Every app answered or failed: Envoy's body may leave now. If it already ended, the
    /// paused response gets the whole rest; if Envoy answered headers only, a local reply.
    fn apps_in(&mut self) {
        let Some(st) = self.stream.as_ref() else {
            return;
        };
        if st.done {
            return;
        }
        if st.ended {
            // Envoy's whole answer waited, paused: it is merged where it lies.
            let waiting = st.waiting;
            self.pass_piece(waiting, true);
            let _ = hostcalls::resume_http_response();
        } else if st.headers_only {
            self.answer_locally();
        }
    }

    /// Envoy answered with headers only (held until the apps are in): nothing has left yet, so
    /// the scrape is answered whole, as a local reply (the dispatched way).
    fn answer_locally(&mut self) {
        let Some(st) = self.stream.as_mut() else {
            return;
        };
        st.done = true;
        if st.usable
            && let Some(merger) = self.merger.as_mut()
        {
            let started = now();
            // Headers only: Envoy's body is empty.
            let stats = merger
                .source_at(0, Format::Text, &self.plugin.labels[0], 0)
                .finish();
            let o = &mut self.outcomes[0];
            o.merge = now().duration_since(started).unwrap_or_default();
            o.duration = started
                .duration_since(o.started.unwrap_or(started))
                .unwrap_or_default();
            self.record(0, &stats);
        }
        self.finish();
    }

    /// Merges the `size` bytes of Envoy's body in hand (`end`: its last), read a window at a
    /// time, and puts what became final in their place, then, at the end, the rest of the
    /// scrape. Bytes that pass untouched are left where they are ([`Body`]).
    fn pass_piece(&mut self, size: usize, end: bool) {
        let (Some(mut merger), Some(mut st)) = (self.merger.take(), self.stream.take()) else {
            return;
        };
        let started = now();
        let labels = &self.plugin.labels[0];
        let mut out = Body::new(size);
        if st.usable && st.lead.is_none() && st.passing.is_none() {
            if merger.may_pass_lead(labels) {
                st.passing = Some(merger.pass_lead());
            } else {
                st.lead = Some(merger.stream_lead(Format::Text, labels));
            }
        }
        let mut at = 0;
        while at < size {
            let len = WINDOW.min(size - at);
            let Some(window) = Body::window(at, len) else {
                // Envoy holds less than it said: the rest is not ours to judge.
                out.consume(size - at);
                break;
            };
            at += len;
            // What each window makes final leaves before the next is read.
            step(&mut merger, &mut st, labels, &window, &mut out);
        }
        if end {
            if let Some(passing) = st.passing.as_mut() {
                let last = passing.end(&mut merger);
                out.put(&last.front);
                if last.engine_from.is_some() {
                    let passing = std::mem::take(passing);
                    st.passing = None;
                    st.lead = Some(merger.take_over(passing, Format::Text, labels));
                }
            }
            let stats = match (st.lead.take(), st.passing.take()) {
                (Some(lead), _) => Some(merger.end_lead(lead)),
                (None, Some(passing)) => Some(merger.end_passing(passing)),
                (None, None) => None,
            };
            if let Some(stats) = stats {
                let o = &mut self.outcomes[0];
                o.duration = now()
                    .duration_since(o.started.unwrap_or(started))
                    .unwrap_or_default();
                self.record(0, &stats);
            }
        }
        out.put(merger.ready());
        merger.consume_ready();
        self.outcomes[0].merge += now().duration_since(started).unwrap_or_default();
        if !end {
            out.finish();
            self.merger = Some(merger);
            self.stream = Some(st);
            return;
        }
        self.conclude(&mut merger);
        // The rest, appended: the apps' output is not copied into one buffer first. Small pieces
        // (a family's header, a few samples) are gathered up to TAIL_BATCH, so a thousand
        // families are a few dozen calls into Envoy, not a thousand.
        let mut batch = Vec::with_capacity(TAIL_BATCH);
        merger.finish_into(&mut |piece| {
            if batch.len() + piece.len() > TAIL_BATCH && !batch.is_empty() {
                out.put(&batch);
                batch.clear();
            }
            if piece.len() >= TAIL_BATCH {
                out.put(piece);
            } else {
                batch.extend_from_slice(piece);
            }
        });
        out.put(&batch);
        out.finish();
        st.done = true;
        // A streaming flight has no waiters: this ends it.
        inflight::land(self.id);
        self.stream = Some(st);
        pool::give_back(merger, self.stream.is_some());
    }
}

/// One window of Envoy's body once the apps are in: passed untouched where it may, else merged
/// (or, past the cap, dropped from the end of the line begun); what is final goes into `out`.
fn step(merger: &mut Merger, st: &mut Streaming, labels: &LabelSet, window: &[u8], out: &mut Body) {
    if !st.usable {
        let keep = st.passing.as_mut().map_or(0, |p| p.cut(window));
        out.keep(keep);
        out.consume(window.len() - keep);
    } else if let Some(passing) = st.passing.as_mut() {
        let p = passing.piece(merger, window);
        out.put(&p.front);
        // Families the scrape's rules drop do not leave: what follows them is copied.
        let mut at = 0;
        for &(from, to) in &p.drop {
            out.keep(from - at);
            out.consume(to - from);
            at = to;
        }
        out.keep(p.keep - at);
        // The rest is held by `passing` or read by the engine from `engine_from` on.
        out.consume(window.len() - p.keep);
        if let Some(from) = p.engine_from {
            let passing = std::mem::take(passing);
            st.passing = None;
            let mut lead = merger.take_over(passing, Format::Text, labels);
            merger.feed_lead(&mut lead, &window[from..]);
            st.lead = Some(lead);
        }
    } else {
        out.consume(window.len());
        if let Some(lead) = st.lead.as_mut() {
            merger.feed_lead(lead, window);
        }
    }
    out.put(merger.ready());
    merger.consume_ready();
}

impl Context for Scrape {
    /// The stream ends. A waiter leaves its flight. A leader whose scraper left before the
    /// answer was ready (its calls are cancelled with it) answers its waiters with what it has:
    /// the sources still awaited are reported failed, never a waiter left hanging.
    fn on_done(&mut self) -> bool {
        admission::done(self.id, now());
        if self.stream.is_some() {
            // Streamed, and its stream ended before its answer did (its scraper left): its
            // flight (which has no waiters) ends.
            if let Some(merger) = self.merger.take() {
                inflight::land(self.id);
                pool::give_back(merger, self.stream.is_some());
            }
        } else if !self.leads {
            inflight::leave(self.id);
        } else if self.merger.is_some() {
            self.gone = true;
            for i in std::mem::take(&mut self.pending).into_values() {
                self.fail(i, &Failure::NoResponse);
            }
            self.finish();
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
        let Some(i) = self.pending.remove(&token) else {
            return;
        };
        self.on_answer(i, body_size);
        if self.pending.is_empty() {
            if self.stream.is_some() {
                self.apps_in();
            } else {
                self.finish();
            }
        }
    }
}

impl HttpContext for Scrape {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        // Test builds only (`--features fault-injection`): a VM that dies, for the failure
        // policy's test. The shipped `.wasm` has no such path.
        #[cfg(feature = "fault-injection")]
        if header("x-meshmetrics-fault").as_deref() == Some("abort") {
            core::arch::wasm32::unreachable();
        }
        let method = header(":method").unwrap_or_default();
        let path = header(":path").unwrap_or_default();
        match plan::route(&self.plugin.config.path, &method, &path) {
            Route::PassThrough => {
                // Only the filter may send a request on to Envoy's admin (`stream_envoy`).
                if self.plugin.config.stream_envoy {
                    let _ =
                        hostcalls::set_map_value(MapType::HttpRequestHeaders, STREAM_HEADER, None);
                }
                Action::Continue
            }
            Route::MethodNotAllowed => {
                respond(
                    405,
                    vec![("allow", "GET, HEAD"), ("content-type", "text/plain")],
                    Some(b"method not allowed\n"),
                );
                Action::Pause
            }
            Route::Scrape { head, filter } => self.start(head, filter),
        }
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        self.response_headers(end_of_stream)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.response_body(body_size, end_of_stream)
    }
}

/// Envoy's answer, when it streams through (`stream_envoy`); otherwise nothing passes here but
/// local replies and the router's 404, left alone.
impl Scrape {
    fn response_headers(&mut self, end_of_stream: bool) -> Action {
        let response = |name: &str| {
            hostcalls::get_map_value(MapType::HttpResponseHeaders, name)
                .ok()
                .flatten()
        };
        let Some(st) = self.stream.as_mut() else {
            return Action::Continue;
        };
        if st.done {
            return Action::Continue;
        }
        let judged = plan::judge(
            response(":status").as_deref(),
            response("content-type").as_deref(),
            0,
            self.plugin.config.max_body_bytes,
        );
        match judged {
            Ok(Format::Text) => st.usable = true,
            Ok(Format::OpenMetrics) => {
                self.fail(
                    0,
                    &Failure::ContentType("application/openmetrics-text".into()),
                );
            }
            Err(why) => self.fail(0, &why),
        }
        let content_type = self
            .merger
            .as_ref()
            .map_or(Format::Text, Merger::format)
            .content_type();
        let set = |name: &str, value: Option<&str>| {
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, value);
        };
        set(":status", Some("200"));
        set("content-type", Some(content_type));
        // The body is rewritten as it passes: its length is not Envoy's.
        set("content-length", None);
        if end_of_stream {
            if let Some(st) = self.stream.as_mut() {
                st.headers_only = true;
            }
            if self.pending.is_empty() {
                self.answer_locally();
            }
            return Action::Pause;
        }
        Action::Continue
    }

    fn response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        let Some(st) = self.stream.as_mut() else {
            return Action::Continue;
        };
        if st.done {
            return Action::Continue;
        }
        // After a paused call, `size` counts what Envoy held for this scrape too.
        st.seen += size.saturating_sub(st.waiting) as u64;
        let cap = self.plugin.config.max_body_bytes;
        if st.usable && st.seen > cap {
            // What was merged stays (valid lines are valid); the rest is dropped, and reported.
            st.usable = false;
            let seen = usize::try_from(st.seen).unwrap_or(usize::MAX);
            self.fail(0, &Failure::TooLarge { size: seen, cap });
        }
        let Some(st) = self.stream.as_mut() else {
            return Action::Continue;
        };
        if !self.pending.is_empty() {
            st.ended = end_of_stream;
            if st.usable {
                // The apps decide where Envoy's families may go: its body waits for them, paused,
                // in Envoy's buffer (the listener's buffer limit is the scrape's budget).
                st.waiting = size;
                return Action::Pause;
            }
            // Dropped (and reported): nothing waits.
            let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, &[]);
            st.waiting = 0;
            return if end_of_stream {
                Action::Pause
            } else {
                Action::Continue
            };
        }
        st.waiting = 0;
        self.pass_piece(size, end_of_stream);
        Action::Continue
    }
}
