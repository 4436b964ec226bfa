//! The metrics listener: on `<address>:<port>`, an HTTP connection manager → [RBAC →] the
//! meshmetrics filter → the router. With Envoy's answer streamed, the router's first route sends
//! the scrape the filter rewrote (Envoy's admin path and the filter's header) to the admin
//! cluster; everything else gets 404 (the filter answers the rest of the metrics path itself).
//!
//! Under `activeMTLSBackend`: mTLS for everyone, and plaintext only from the dataplane itself
//! (Kuma's rule), told apart by the TLS inspector; plaintext from elsewhere matches no chain and
//! is closed.

use envoy_types::pb::envoy::config::core::v3::{CidrRange, HttpProtocolOptions};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, filter, listener_filter,
};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, HeaderMatcher, Route, RouteAction, RouteConfiguration, RouteMatch,
    VirtualHost, header_matcher, route, route_action, route_match,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::connection_limit::v3::ConnectionLimit;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager, http_filter,
};
use envoy_types::pb::google::protobuf::{UInt32Value, UInt64Value};
use meshmetrics_filter::config::{STREAM_HEADER, Source};

use super::{LISTENER, proto};
use crate::effective::Effective;

/// How long a client connection may live. A configuration change reaches a connection only
/// when it is made: Envoy drains the connections of a replaced listener over its
/// `--drain-time-s` (10 minutes by default), so a keep-alive scraper would see the old
/// configuration that long. Two seconds is well below any scrape interval Prometheus is used
/// with, so it costs one connection per scrape and bounds a change's delay. A scrape in flight
/// is never cut: its connection closes after the answer. It must also be long enough for a
/// busy Envoy to read a new connection's request (one that has sent nothing by then is closed).
const MAX_CONNECTION_MS: u64 = 2_000;

/// How long Envoy waits, after the last answer on a connection it closes, for the client to
/// read what is still buffered (the timer restarts at every write that makes progress). Envoy's
/// 1 s default can cut a large scrape to a client its CPU is slow to schedule.
const DELAYED_CLOSE_MS: u64 = 10_000;

/// The longest one scrape's stream may last, from its request to the last byte handed to the
/// client's connection: a client that reads an answer slowly (or a source that never ends)
/// holds Envoy's admin stream and the filter's state no longer than this. Two minutes is above
/// any scrape timeout Prometheus is used with (it cannot pass the scrape interval), so no
/// honest scrape is cut.
pub const MAX_STREAM_MS: u64 = 120_000;

/// Connections the metrics listener holds open at once unless told otherwise: a connection
/// over it is closed as it is accepted. Envoy's file descriptors and memory are the
/// application's too; a flood of connections to the metrics port must not take them. 1,024 is
/// far above what scrapers need (one connection per scrape, each closed within
/// [`MAX_CONNECTION_MS`] of its answer) and, idle, costs Envoy a few MB.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 1024;

/// The route that takes a streamed scrape to Envoy's admin: only a request the filter sent on
/// carries [`STREAM_HEADER`] (it removes it from every other), so no client reaches the admin
/// through the metrics listener. Its timeout is the source's; the filter shortens it per scrape
/// (`x-envoy-upstream-rq-timeout-ms`) to the scraper's own.
pub fn admin_route(admin: &Source) -> Route {
    Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Path(admin.path.clone())),
            headers: vec![HeaderMatcher {
                name: STREAM_HEADER.into(),
                header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::PresentMatch(
                    true,
                )),
                ..Default::default()
            }],
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                admin.cluster.clone(),
            )),
            timeout: Some(proto::millis(admin.timeout_ms)),
            ..Default::default()
        })),
        request_headers_to_remove: vec![STREAM_HEADER.into()],
        ..Default::default()
    }
}

/// The metrics listener's buffer limit when Envoy's answer streams: the scrape's budget and a
/// MiB for the filter's own families. When the apps answer after Envoy's whole body has passed,
/// the filter puts the whole answer into the paused last piece, and Envoy resets a stream whose
/// buffered body passes this limit (its default is 1 MiB). It is also how much a slow scraper's
/// connection may hold before Envoy stops reading the admin: no more than the dispatched design,
/// where the whole answer was one local reply.
pub fn stream_buffer_limit(max_scrape_bytes: u64) -> UInt32Value {
    let limit = max_scrape_bytes.saturating_add(1 << 20);
    UInt32Value {
        value: u32::try_from(limit).unwrap_or(u32::MAX),
    }
}

/// The listener, with `filters` (the HTTP filters before the router) on each chain, `tls`
/// (when not plaintext), and the route to Envoy's admin when its answer streams.
pub fn metrics(
    e: &Effective,
    filters: Vec<HttpFilter>,
    rbac: Option<HttpFilter>,
    tls: Option<envoy_types::pb::envoy::config::core::v3::TransportSocket>,
    mtls: bool,
    admin: Option<Route>,
    connections: Connections,
) -> Listener {
    let manager = |filters, rbac| manager(filters, rbac, admin.clone());
    let chain = |manager| chain(manager, &connections);
    let mut listener = Listener {
        name: LISTENER.into(),
        address: Some(proto::socket(&e.address, e.port)),
        ..Default::default()
    };
    match tls {
        None => listener.filter_chains = vec![chain(manager(filters, None))],
        Some(socket) if mtls => {
            listener.listener_filters = vec![ListenerFilter {
                name: "envoy.filters.listener.tls_inspector".into(),
                config_type: Some(listener_filter::ConfigType::TypedConfig(proto::any(
                    &TlsInspector::default(),
                ))),
                ..Default::default()
            }];
            let mut secure = chain(manager(filters.clone(), rbac));
            secure.name = "mtls".into();
            secure.filter_chain_match = Some(FilterChainMatch {
                transport_protocol: "tls".into(),
                ..Default::default()
            });
            secure.transport_socket = Some(socket);
            let mut local = chain(manager(filters, None));
            local.name = "plaintext-from-self".into();
            local.filter_chain_match = Some(FilterChainMatch {
                transport_protocol: "raw_buffer".into(),
                source_prefix_ranges: own_addresses(e),
                ..Default::default()
            });
            listener.filter_chains = vec![secure, local];
        }
        Some(socket) => {
            let mut only = chain(manager(filters, None));
            only.transport_socket = Some(socket);
            listener.filter_chains = vec![only];
        }
    }
    listener
}

/// What every chain does with a client connection before HTTP.
#[derive(Clone, Debug)]
pub struct Connections {
    /// How many the listener holds open at once.
    pub max: u64,
    /// The module's network filter, which hears each connection close (the answering budget).
    pub watch: Filter,
}

/// A chain: the connection limit, the module's connection watch, then the HTTP connection
/// manager. The limit is the network filter's, not the overload manager's: it counts this
/// listener's connections only, so a flood of the metrics port is shed there and never sheds
/// the application's own traffic (the overload manager acts on the whole process), and it is
/// pushed with the listener over LDS, where the overload manager lives in the bootstrap only.
fn chain(manager: HttpConnectionManager, connections: &Connections) -> FilterChain {
    let limit = ConnectionLimit {
        stat_prefix: "meshmetrics".into(),
        max_connections: Some(UInt64Value {
            value: connections.max.max(1),
        }),
        ..Default::default()
    };
    FilterChain {
        filters: vec![
            Filter {
                name: "envoy.filters.network.connection_limit".into(),
                config_type: Some(filter::ConfigType::TypedConfig(proto::any(&limit))),
            },
            connections.watch.clone(),
            Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(proto::any(&manager))),
            },
        ],
        ..Default::default()
    }
}

fn manager(
    filters: Vec<HttpFilter>,
    rbac: Option<HttpFilter>,
    admin: Option<Route>,
) -> HttpConnectionManager {
    let router = HttpFilter {
        name: "envoy.filters.http.router".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(proto::any(
            &Router::default(),
        ))),
        ..Default::default()
    };
    HttpConnectionManager {
        stat_prefix: "meshmetrics".into(),
        common_http_protocol_options: Some(HttpProtocolOptions {
            max_connection_duration: Some(proto::millis(MAX_CONNECTION_MS)),
            max_stream_duration: Some(proto::millis(MAX_STREAM_MS)),
            ..Default::default()
        }),
        delayed_close_timeout: Some(proto::millis(DELAYED_CLOSE_MS)),
        route_specifier: Some(http_connection_manager::RouteSpecifier::RouteConfig(
            RouteConfiguration {
                name: "meshmetrics".into(),
                virtual_hosts: vec![VirtualHost {
                    name: "meshmetrics".into(),
                    domains: vec!["*".into()],
                    routes: admin
                        .into_iter()
                        .chain([Route {
                            r#match: Some(RouteMatch {
                                path_specifier: Some(route_match::PathSpecifier::Prefix(
                                    "/".into(),
                                )),
                                ..Default::default()
                            }),
                            action: Some(route::Action::DirectResponse(DirectResponseAction {
                                status: 404,
                                body: Some(proto::inline("not found\n")),
                                ..Default::default()
                            })),
                            ..Default::default()
                        }])
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        )),
        http_filters: rbac.into_iter().chain(filters).chain([router]).collect(),
        ..Default::default()
    }
}

/// Source ranges that count as "the dataplane itself": loopback and the listener's own address.
fn own_addresses(e: &Effective) -> Vec<CidrRange> {
    let range = |ip: &str, len: u32| CidrRange {
        address_prefix: ip.into(),
        prefix_len: Some(UInt32Value { value: len }),
    };
    let mut ranges = vec![range("127.0.0.1", 32), range("::1", 128)];
    if let Ok(ip) = e.address.parse::<std::net::IpAddr>()
        && !ip.is_unspecified()
        && !ip.is_loopback()
    {
        let len = if ip.is_ipv4() { 32 } else { 128 };
        ranges.push(range(&ip.to_string(), len));
    }
    ranges
}
