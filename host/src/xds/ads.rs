//! Envoy's Aggregated Discovery Service, state of the world: one gRPC stream per proxy carries
//! its clusters, its listener and its certificate.
//!
//! Per stream and per type this keeps what was last sent (version, nonce, when). A request with
//! the last nonce and no error is an ACK; with an `error_detail` a NACK: logged with Envoy's
//! message, counted, and nothing is resent until the proxy's resources change again (resending
//! what was refused would loop). A request with no nonce opens the type and is answered with the
//! current resources. Streams are independent tasks: a slow or failing proxy holds up no other.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::state::State;
use super::{PUSH_ORDER, Snapshot, short};
use crate::auth::{Authority, Claims, Refusal};

/// The most resource names one request may list (a proxy asks for a handful).
pub const MAX_RESOURCE_NAMES: usize = 1024;
/// The longest resource name a request may list.
pub const MAX_RESOURCE_NAME_BYTES: usize = 512;

/// What one stream last sent of one type.
#[derive(Default)]
struct Sent {
    /// The names the proxy asked for (none: all).
    names: Vec<String>,
    version: Option<String>,
    nonce: String,
    at: Option<Instant>,
}

pub struct Ads {
    state: Arc<State>,
}

impl Ads {
    pub fn new(state: Arc<State>) -> Ads {
        Ads { state }
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let auth = match &self.state.auth {
            None => None,
            Some(authority) => {
                let header = request
                    .metadata()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok());
                let peer = request
                    .remote_addr()
                    .map_or_else(|| "?".to_owned(), |a| a.to_string());
                // Subscribed before checking: a reload between the two is seen by the stream
                // (a revocation cannot slip in between the check and the watch).
                let mut watch = authority.subscribe();
                let checked = watch.borrow_and_update().verify(header);
                match checked {
                    Ok(claims) => Some(Auth {
                        claims,
                        header: header.unwrap_or_default().to_owned(),
                        authority: watch,
                    }),
                    Err(refusal) => {
                        self.state
                            .refused(&format!("a stream from {peer}"), refusal);
                        return Err(refusal.status());
                    }
                }
            }
        };
        let (tx, rx) = mpsc::channel(8);
        let stream = ProxyStream::new(self.state.clone(), tx, auth);
        tokio::spawn(stream.run(request.into_inner()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "meshmetrics serves state-of-the-world ADS (api_type: GRPC)",
        ))
    }
}

/// What a stream's token proved, and how to check it again when the keys or the revocations
/// change.
struct Auth {
    claims: Claims,
    /// The `authorization` header as sent (kept to check it again; never logged).
    header: String,
    authority: tokio::sync::watch::Receiver<Arc<Authority>>,
}

impl Auth {
    /// When the token expires, as a deadline for the stream.
    fn expiry(&self) -> Instant {
        let left = (self.claims.exp + crate::auth::token::LEEWAY_SECS)
            .saturating_sub(crate::auth::token::now());
        Instant::now() + std::time::Duration::from_secs(left)
    }
}

/// One proxy's stream.
struct ProxyStream {
    state: Arc<State>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    /// The proxy as it named itself in its first request.
    node: Option<Node>,
    /// Who it is, for logs: `mesh/name` or its node id.
    who: String,
    snapshot: Option<Arc<Snapshot>>,
    /// When the certificate in the pushed snapshot is due to be re-issued; `None` when it
    /// carries none (no mTLS, or nothing could be built): the timer only ever waits for a
    /// certificate that exists.
    renew_at: Option<Instant>,
    /// The effective configuration the snapshot was built from.
    effective: Option<crate::effective::Effective>,
    sent: HashMap<String, Sent>,
    nonce: u64,
    /// `None` only when the control plane runs `--insecure`.
    auth: Option<Auth>,
}

impl ProxyStream {
    fn new(
        state: Arc<State>,
        tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
        auth: Option<Auth>,
    ) -> Self {
        ProxyStream {
            auth,
            state,
            tx,
            node: None,
            who: String::new(),
            snapshot: None,
            renew_at: None,
            effective: None,
            sent: HashMap::new(),
            nonce: 0,
        }
    }

    async fn run(mut self, mut inbound: Streaming<DiscoveryRequest>) {
        let stats = self.state.stats.clone();
        stats.connected(1);
        let mut world = self.state.world.subscribe();
        loop {
            let renew = self.renew_at;
            let expiry = self.auth.as_ref().map(Auth::expiry);
            tokio::select! {
                _ = authority_changed(&mut self.auth) => {
                    let Some(auth) = &mut self.auth else { break };
                    let checked = auth.authority.borrow_and_update().verify(Some(&auth.header));
                    if let Err(refusal) = checked {
                        self.close(refusal).await;
                        break;
                    }
                }
                _ = sleep_until(expiry) => {
                    self.close(Refusal::Expired).await;
                    break;
                }
                msg = inbound.message() => match msg {
                    Ok(Some(req)) => {
                        if self.handle(req, &world).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        eprintln!("meshmetrics control-plane: {}: stream ended: {}", crate::diag::untrusted(&self.who), crate::diag::untrusted(status.message()));
                        break;
                    }
                },
                changed = world.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    if self.rebuild(&world).await.is_err() {
                        break;
                    }
                }
                _ = sleep_until(renew) => {
                    if self.rebuild(&world).await.is_err() {
                        break;
                    }
                }
            }
        }
        stats.connected(-1);
        if !self.who.is_empty() {
            eprintln!(
                "meshmetrics control-plane: {} disconnected",
                crate::diag::untrusted(&self.who)
            );
        }
    }

    /// Builds this proxy's snapshot from the current world; pushes what changed.
    async fn rebuild(
        &mut self,
        world: &tokio::sync::watch::Receiver<Arc<super::state::World>>,
    ) -> Result<(), ()> {
        let Some(node) = &self.node else {
            return Ok(());
        };
        let current = world.borrow().clone();
        let built = self.state.effective(&current, node).and_then(|e| {
            // Only a proxy whose effective configuration changed is rebuilt (or one whose
            // certificate is due).
            let due = self.renew_at.is_some_and(|at| at <= Instant::now());
            if self.effective.as_ref() == Some(&e) && !due {
                return Ok(None);
            }
            let s = self.state.snapshot(&e, node)?;
            Ok(Some((e, s)))
        });
        let next = match built {
            Ok(None) => return Ok(()),
            Ok(Some((e, s))) => {
                self.renew_at = (e.tls == crate::resources::metrics::TlsMode::ActiveMtlsBackend)
                    .then(|| self.state.renewal(&e.id))
                    .flatten();
                self.effective = Some(e);
                s
            }
            Err(why) => {
                // Nothing to renew while nothing can be built (the dataplane deleted, renamed,
                // or its mesh's mTLS gone): a timer left behind would fire at once, forever.
                // The next change of the resources tries again.
                self.renew_at = None;
                self.state.stats.generate_error();
                // Keep what the proxy has: a proxy whose resources cannot be built now keeps
                // serving the last ones it accepted.
                eprintln!(
                    "meshmetrics control-plane: {}: keeping its last resources: {}",
                    crate::diag::untrusted(&self.who),
                    crate::diag::untrusted(&format!("{why:#}"))
                );
                return Ok(());
            }
        };
        if self.snapshot.as_deref() == Some(&*next) {
            return Ok(());
        }
        self.snapshot = Some(next);
        for t in PUSH_ORDER {
            let stale = self.sent.get(t).is_some_and(|s| {
                s.version.as_deref() != self.snapshot.as_ref().and_then(|n| n.version(t))
            });
            if stale {
                self.respond(t).await?;
            }
        }
        Ok(())
    }

    async fn handle(
        &mut self,
        req: DiscoveryRequest,
        world: &tokio::sync::watch::Receiver<Arc<super::state::World>>,
    ) -> Result<(), ()> {
        if self.node.is_none() {
            let Some(node) = req.node.clone() else {
                let _ = self
                    .tx
                    .send(Err(Status::invalid_argument(
                        "the first request names no node",
                    )))
                    .await;
                return Err(());
            };
            self.who = super::state::selector(&node);
            if let Some(auth) = &self.auth {
                let named = super::state::node_dataplane(&node);
                let c = &auth.claims;
                if named.as_ref().map(|(m, d)| (m.as_str(), d.as_str()))
                    != Some((c.mesh.as_str(), c.name.as_str()))
                {
                    self.close(Refusal::WrongDataplane).await;
                    return Err(());
                }
            }
            // A node that is no dataplane gets nothing and keeps no stream (Envoy retries with
            // backoff, and is served once its dataplane is in the resources). With tokens, only
            // the exact identity counts (see `State::effective`).
            let known = self
                .state
                .dataplane(&world.borrow().resources, &self.who)
                .is_ok();
            if !known {
                self.close(Refusal::UnknownDataplane).await;
                return Err(());
            }
            eprintln!(
                "meshmetrics control-plane: {} connected",
                crate::diag::untrusted(&self.who)
            );
            self.node = Some(node);
            self.rebuild(world).await?;
        } else if req.node.is_some() && req.node != self.node {
            // Envoy names its node once; a stream that names another is not the one we checked.
            self.close(Refusal::NodeChanged).await;
            return Err(());
        }
        // Only the types we serve, and a bounded list of names: anything else would be kept
        // per stream for nothing (what a stranger could grow without end).
        if !PUSH_ORDER.contains(&req.type_url.as_str()) {
            self.close_with(Status::invalid_argument(format!(
                "meshmetrics serves {}; not {}",
                PUSH_ORDER.map(short).join(", "),
                crate::diag::untrusted(&req.type_url)
            )))
            .await;
            return Err(());
        }
        if req.resource_names.len() > MAX_RESOURCE_NAMES
            || req
                .resource_names
                .iter()
                .any(|n| n.len() > MAX_RESOURCE_NAME_BYTES)
        {
            self.close_with(Status::invalid_argument(format!(
                "at most {MAX_RESOURCE_NAMES} resource names of at most {MAX_RESOURCE_NAME_BYTES} bytes"
            )))
            .await;
            return Err(());
        }
        let t = req.type_url.clone();
        if let Some(error) = &req.error_detail {
            self.state.stats.nacked(&t);
            eprintln!(
                "meshmetrics control-plane: {} rejected {} version {:?} (keeps {}): {}",
                crate::diag::untrusted(&self.who),
                short(&t),
                self.sent
                    .get(&t)
                    .and_then(|s| s.version.clone())
                    .unwrap_or_default(),
                crate::diag::untrusted(&req.version_info),
                crate::diag::untrusted(&error.message)
            );
            if let Some(s) = self.sent.get_mut(&t) {
                s.names = req.resource_names;
            }
            return Ok(());
        }
        let sent = self.sent.entry(t.clone()).or_default();
        let names_changed = sent.names != req.resource_names;
        sent.names = req.resource_names;
        if !req.response_nonce.is_empty() {
            if req.response_nonce != sent.nonce {
                // An answer to an older response; the newer one's answer will come.
                return Ok(());
            }
            if let Some(at) = sent.at.take() {
                self.state.stats.acked(&t, at.elapsed());
            }
            if !names_changed {
                return Ok(());
            }
        }
        self.respond(&t).await
    }

    /// Ends the stream with `status` (a request no proxy sends).
    async fn close_with(&mut self, status: Status) {
        eprintln!(
            "meshmetrics control-plane: closed the stream of {}: {}",
            crate::diag::untrusted(&self.who),
            status.message()
        );
        let _ = self.tx.send(Err(status)).await;
    }

    /// Ends the stream with `refusal`'s gRPC status; logged and counted, never the token.
    async fn close(&mut self, refusal: Refusal) {
        let who = if self.who.is_empty() {
            "a stream".to_owned()
        } else {
            self.who.clone()
        };
        self.state.refused(&who, refusal);
        // Whoever held this stream may have the key pushed on it: the next stream of this
        // dataplane gets a new one.
        if let Some(e) = &self.effective {
            self.state.forget_certificate(&e.id);
        }
        let _ = self.tx.send(Err(refusal.status())).await;
    }

    /// Sends this proxy's current resources of type `t` (what it asked for).
    async fn respond(&mut self, t: &str) -> Result<(), ()> {
        let Some(snapshot) = &self.snapshot else {
            return Ok(());
        };
        let Some(typed) = snapshot.types.get(t) else {
            return Ok(());
        };
        let sent = self.sent.entry(t.to_owned()).or_default();
        self.nonce += 1;
        let response = DiscoveryResponse {
            version_info: typed.version.clone(),
            resources: typed.select(&sent.names),
            type_url: t.to_owned(),
            nonce: self.nonce.to_string(),
            ..Default::default()
        };
        sent.version = Some(typed.version.clone());
        sent.nonce = response.nonce.clone();
        sent.at = Some(Instant::now());
        self.state.stats.pushed(t);
        self.tx.send(Ok(response)).await.map_err(|_| ())
    }
}

/// Resolves when the keys or the revocations were reloaded (never without a token).
async fn authority_changed(auth: &mut Option<Auth>) {
    match auth {
        Some(a) => {
            if a.authority.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
