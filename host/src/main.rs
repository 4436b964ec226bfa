//! `meshmetrics`: validate resources, generate a proxy's Envoy bootstrap, run a demo app.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use meshmetrics::bootstrap::{self, Options};
use meshmetrics::{Diagnostics, effective, read_resources, resources, sampleapp};

#[derive(Parser)]
#[command(
    name = "meshmetrics",
    version,
    about = "One Prometheus endpoint per mesh proxy: Envoy's stats and its apps', merged by a wasm filter."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check resources; print each dataplane's effective metrics configuration (JSON) or every error.
    Validate {
        /// Resource files or directories (YAML, Kubernetes or Universal form).
        #[arg(short = 'f', long = "file", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// Only this dataplane (a Dataplane name, or a Pod as `name` or `name.namespace`).
        #[arg(long)]
        dataplane: Option<String>,
    },
    /// Write the Envoy bootstrap that serves one dataplane's metrics endpoint: static (from
    /// -f and --wasm), or minimal with --control-plane (everything else is pushed over xDS).
    Bootstrap {
        #[arg(long)]
        dataplane: String,
        #[arg(short = 'f', long = "file", num_args = 1.., required_unless_present = "control_plane")]
        files: Vec<PathBuf>,
        /// The filter (`scripts/build-filter` prints its path).
        #[arg(long, required_unless_present = "control_plane")]
        wasm: Option<PathBuf>,
        /// The control plane's xDS address (`host:port`): write the minimal bootstrap.
        #[arg(long, conflicts_with_all = ["files", "wasm"])]
        control_plane: Option<String>,
        /// The dataplane's mesh (with --control-plane; needed when the name is not unique, and
        /// with a token).
        #[arg(long, requires = "control_plane")]
        mesh: Option<String>,
        /// The dataplane token (`generate dataplane-token`): Envoy reads it from this file for
        /// every ADS stream, so a rotated file is picked up without a restart.
        #[arg(long, requires_all = ["control_plane", "mesh", "ca_cert"])]
        token_file: Option<PathBuf>,
        /// The CA that issued the control plane's certificate: Envoy verifies the control
        /// plane's certificate against it, for the host of --control-plane.
        #[arg(long, requires = "control_plane")]
        ca_cert: Option<PathBuf>,
        /// Output file (default: standard output).
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// Port of Envoy's admin endpoint, bound to 127.0.0.1.
        #[arg(long, default_value_t = 9901)]
        admin_port: u16,
        /// Per-source timeout, in milliseconds.
        #[arg(long, default_value_t = meshmetrics_filter::config::DEFAULT_TIMEOUT_MS)]
        timeout_ms: u64,
        /// Largest body read from one source, in bytes.
        #[arg(long, default_value_t = meshmetrics_filter::config::DEFAULT_MAX_BODY_BYTES)]
        max_body_bytes: u64,
        /// Largest output of one source in a scrape, in bytes (labels added); a source past it
        /// is stopped at a line boundary and reported.
        #[arg(long, default_value_t = meshmetrics_filter::config::DEFAULT_MAX_SOURCE_BYTES)]
        max_source_bytes: u64,
        /// Largest output of one scrape, in bytes; sources past it, in priority order, are left
        /// out and reported.
        #[arg(long, default_value_t = meshmetrics_filter::config::DEFAULT_MAX_SCRAPE_BYTES)]
        max_scrape_bytes: u64,
        /// Label Envoy's own samples with mesh/dataplane/service too (costs ~70% more bytes).
        #[arg(long)]
        envoy_labels: bool,
        /// Encode answers with gzip when the scraper accepts it (`gzip`), or never (`none`).
        #[arg(long, default_value = "gzip")]
        compression: meshmetrics::generator::compression::Compression,
        /// How Envoy's own stats reach the filter: through it, rewritten as they pass
        /// (`stream`), or fetched whole by a dispatched call (`dispatch`).
        #[arg(long, default_value = "stream")]
        envoy_body: meshmetrics::generator::EnvoyBody,
        #[command(flatten)]
        proxy: ProxyArgs,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// The mesh CA: create it, and issue SPIFFE certificates (`spiffe://<mesh>/<service>`).
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Serve the metrics endpoint without Envoy: the filter's .wasm under wasmtime.
    Serve {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// Where to listen (default: the dataplane's metrics address and port).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Do one scrape through the filter under wasmtime and print it.
    Scrape {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// The scraper's Accept header.
        #[arg(long)]
        accept: Option<String>,
        /// Path and query to ask for (default: the configured metrics path).
        #[arg(long)]
        path: Option<String>,
    },
    /// Serve every proxy over xDS (ADS: listener, clusters, certificates), with discovery for
    /// Prometheus, the filter's module and its own metrics on --http; the files are watched and
    /// each change is pushed live.
    ControlPlane {
        #[arg(short = 'f', long = "file", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// Where Envoys connect for ADS (gRPC).
        #[arg(long, default_value = "127.0.0.1:5678")]
        xds: std::net::SocketAddr,
        /// Discovery (/sd, MADS), the filter's module (/wasm/<sha256>.wasm), /metrics.
        #[arg(long, default_value = "127.0.0.1:5676")]
        http: std::net::SocketAddr,
        /// The address proxies use to reach --http (default: --http; 127.0.0.1 if unspecified).
        #[arg(long)]
        advertise_http: Option<std::net::SocketAddr>,
        /// The filter's module, served to proxies (Envoy fetches it and checks its sha256).
        #[arg(long, required_unless_present = "local_wasm")]
        wasm: Option<PathBuf>,
        /// Instead of --wasm: the module's path on every proxy's machine.
        #[arg(long, conflicts_with = "wasm")]
        local_wasm: Option<PathBuf>,
        /// activeMTLSBackend: the mesh CA directory (`meshmetrics ca init`).
        #[arg(long)]
        mesh_ca: Option<PathBuf>,
        /// Lifetime of the certificates pushed under activeMTLSBackend (re-issued with a
        /// third left).
        #[arg(long, default_value = "24h", value_parser = meshmetrics::tls::parse_validity)]
        cert_lifetime: std::time::Duration,
        /// providedTLS: the certificate and key, as paths on the proxies' machines.
        #[arg(long)]
        metrics_cert: Option<PathBuf>,
        #[arg(long)]
        metrics_key: Option<PathBuf>,
        /// How often the files are checked for changes, in milliseconds.
        #[arg(long, default_value_t = 250)]
        poll_ms: u64,
        /// Per-source timeout of the filter, in milliseconds.
        #[arg(long, default_value_t = meshmetrics_filter::config::DEFAULT_TIMEOUT_MS)]
        timeout_ms: u64,
        /// Encode answers with gzip when the scraper accepts it (`gzip`), or never (`none`).
        #[arg(long, default_value = "gzip")]
        compression: meshmetrics::generator::compression::Compression,
        /// How Envoy's own stats reach the filter: through it, rewritten as they pass
        /// (`stream`), or fetched whole by a dispatched call (`dispatch`).
        #[arg(long, default_value = "stream")]
        envoy_body: meshmetrics::generator::EnvoyBody,
        #[command(flatten)]
        proxy: ProxyArgs,
        /// Signing keys of dataplane tokens (`generate signing-key`); watched: every ADS
        /// stream must present a token of its dataplane.
        #[arg(long)]
        keys: Option<PathBuf>,
        /// Revoked token ids (`jti`), one per line; watched: a revoked proxy's stream is closed.
        #[arg(long, requires = "keys")]
        revocations: Option<PathBuf>,
        /// The control plane's certificate (PEM chain) for ADS and HTTP over TLS.
        #[arg(long, requires = "xds_key")]
        xds_cert: Option<PathBuf>,
        #[arg(long, requires = "xds_cert")]
        xds_key: Option<PathBuf>,
        /// Discovery (/sd, MADS) requires `Authorization: Bearer <this file's content>`.
        #[arg(long)]
        discovery_token_file: Option<PathBuf>,
        /// Serve without --keys or TLS: loopback only.
        #[arg(long)]
        insecure: bool,
        /// ADS connections open at once; more wait in the kernel's backlog.
        #[arg(long, default_value_t = meshmetrics::controlplane::DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
        /// ADS streams on one connection (Envoy opens one).
        #[arg(long, default_value_t = meshmetrics::controlplane::DEFAULT_MAX_STREAMS_PER_CONNECTION)]
        max_streams_per_connection: u32,
        /// Connections to --http open at once (MADS long polls included).
        #[arg(long, default_value_t = meshmetrics::controlplane::DEFAULT_MAX_HTTP_CONNECTIONS)]
        max_http_connections: usize,
    },
    /// Serve discovery for Prometheus (MADS and http_sd) from resource files, reloaded on change
    /// (the control plane serves the same on its --http; this runs it alone).
    Discovery {
        #[arg(short = 'f', long = "file", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:5676")]
        listen: std::net::SocketAddr,
        /// How often the files are checked for changes, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        poll_ms: u64,
        /// Requests must carry `Authorization: Bearer <this file's content>`.
        #[arg(long)]
        discovery_token_file: Option<PathBuf>,
    },
    /// Print a Prometheus scrape configuration that discovers dataplanes through `discovery`.
    PrometheusConfig {
        /// Where `meshmetrics discovery` listens.
        #[arg(long, default_value = "http://127.0.0.1:5676")]
        discovery: String,
        #[arg(long, default_value = "meshmetrics")]
        job: String,
        #[arg(long, default_value = "15s")]
        interval: String,
        /// CA file Prometheus trusts for TLS targets (providedTLS's CA, or the mesh CA).
        #[arg(long)]
        tls_ca: Option<String>,
        /// Prometheus' client certificate for activeMTLSBackend (`meshmetrics ca issue`).
        #[arg(long)]
        tls_cert: Option<String>,
        #[arg(long)]
        tls_key: Option<String>,
        /// The bearer token file discovery requires (`--discovery-token-file`), as a path
        /// Prometheus reads.
        #[arg(long)]
        discovery_token_file: Option<String>,
        /// The CA Prometheus trusts for an https --discovery (the control plane's CA).
        #[arg(long)]
        discovery_ca: Option<String>,
        /// This Prometheus' MeshMetric `clientId`: discovery gives it the Prometheus backends
        /// that name it (without: the backends that name none).
        #[arg(long)]
        client_id: Option<String>,
    },
    /// Signing keys and dataplane tokens: who may talk to the control plane.
    Generate {
        #[command(subcommand)]
        command: GenerateCommand,
    },
    /// Serve a sample application's metrics (for the demo).
    DemoApp {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Metric name prefix.
        #[arg(long, default_value = "demo")]
        name: String,
        /// Answer in OpenMetrics instead of text 0.0.4.
        #[arg(long)]
        openmetrics: bool,
    },
}

/// What every proxy's metrics listener and push get, in a static bootstrap or over xDS.
#[derive(clap::Args)]
struct ProxyArgs {
    /// Bytes of answers the proxy hands to Envoy at once before more wait (then 503 with
    /// Retry-After); two answers always pass. 0: no budget.
    #[arg(long, default_value_t = meshmetrics_filter::config::DEFAULT_MAX_ANSWERING_BYTES)]
    max_answering_bytes: u64,
    /// Connections the metrics listener holds open at once; more are closed as they come.
    #[arg(long, default_value_t = meshmetrics::generator::listener::DEFAULT_MAX_CONNECTIONS)]
    max_metrics_connections: u64,
    /// The CA of the OpenTelemetry collector's certificate, as a path on the proxies: the
    /// push then goes over TLS and checks the collector's name (default: plaintext).
    #[arg(long)]
    otel_ca: Option<PathBuf>,
}

#[derive(clap::Args)]
struct TlsArgs {
    /// providedTLS certificate (default: $KUMA_DATAPLANE_RUNTIME_METRICS_CERT_PATH).
    #[arg(long, env = "KUMA_DATAPLANE_RUNTIME_METRICS_CERT_PATH")]
    metrics_cert: Option<PathBuf>,
    /// providedTLS key (default: $KUMA_DATAPLANE_RUNTIME_METRICS_KEY_PATH).
    #[arg(long, env = "KUMA_DATAPLANE_RUNTIME_METRICS_KEY_PATH")]
    metrics_key: Option<PathBuf>,
    /// providedTLS without a usable certificate serves plaintext (with a warning) instead of failing.
    #[arg(long)]
    allow_plaintext_fallback: bool,
    /// activeMTLSBackend: the mesh CA directory (`meshmetrics ca init`).
    #[arg(long)]
    mesh_ca: Option<PathBuf>,
    /// Where files the bootstrap refers to are written: the SDS file of the listener's
    /// certificate and the dataplane's issued certificate (default: the directory of -o, or .).
    #[arg(long)]
    certs_dir: Option<PathBuf>,
    /// Lifetime of the dataplane certificate issued with --mesh-ca (`90d` unless given).
    #[arg(long, value_parser = meshmetrics::tls::parse_validity)]
    validity: Option<std::time::Duration>,
}

#[derive(Subcommand)]
enum GenerateCommand {
    /// Add a new signing key for a mesh in --keys (`<keys>/<mesh>/signing-key-<serial>.pem`);
    /// new tokens are signed by the newest, every key present verifies.
    SigningKey {
        #[arg(long)]
        mesh: String,
        #[arg(long)]
        keys: PathBuf,
    },
    /// A token (JWT) proving to the control plane that its bearer is this dataplane.
    DataplaneToken {
        #[arg(long)]
        keys: PathBuf,
        #[arg(long)]
        mesh: String,
        #[arg(long)]
        dataplane: String,
        /// How long it is valid (`24h`, `30d`, ...; at most 3650d).
        #[arg(long, default_value = "8760h", value_parser = meshmetrics::tls::parse_validity)]
        valid_for: std::time::Duration,
        /// Output file, readable by its owner only (default: standard output).
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create the mesh CA (ca.pem, ca.key) in --dir.
    Init {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "default")]
        mesh: String,
    },
    /// Issue a certificate for spiffe://<mesh>/<service>: writes <out>.pem and <out>.key.
    Issue {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "default")]
        mesh: String,
        #[arg(long)]
        service: String,
        /// Also valid for these DNS names / IP addresses (for a server certificate).
        #[arg(long)]
        dns: Vec<String>,
        #[arg(long)]
        ip: Vec<std::net::IpAddr>,
        #[arg(short = 'o', long)]
        out: PathBuf,
        /// Lifetime of the certificate (`365d`, `24h`, ...; at most 3650d).
        #[arg(long, default_value = "365d", value_parser = meshmetrics::tls::parse_validity)]
        validity: std::time::Duration,
    },
}

#[derive(clap::Args)]
struct EndpointArgs {
    #[arg(long)]
    dataplane: String,
    #[arg(short = 'f', long = "file", required = true, num_args = 1..)]
    files: Vec<PathBuf>,
    #[arg(long)]
    wasm: PathBuf,
    /// A running Envoy's admin address, for Envoy's own stats.
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: String,
    #[arg(long, default_value_t = meshmetrics_filter::config::DEFAULT_TIMEOUT_MS)]
    timeout_ms: u64,
    /// Label Envoy's own samples with mesh/dataplane/service too.
    #[arg(long)]
    envoy_labels: bool,
}

impl EndpointArgs {
    fn load(&self) -> Result<(meshmetrics::Effective, meshmetrics::serve::Endpoint)> {
        let res = read_resources(&self.files)?;
        let (e, diags) = effective(&res, &self.dataplane)?;
        print_warnings(&diags);
        let wasm = std::fs::read(&self.wasm).with_context(|| {
            format!(
                "--wasm {}: cannot read (build it with scripts/build-filter)",
                self.wasm.display()
            )
        })?;
        let mut o = Options::new(&self.wasm);
        o.timeout_ms = self.timeout_ms;
        o.envoy_labels = self.envoy_labels;
        let endpoint = meshmetrics::serve::Endpoint::new(
            &wasm,
            &e,
            &o,
            &self.admin,
            meshmetrics::runtime::Limits::default(),
        )?;
        Ok((e, endpoint))
    }
}

/// `--metrics-cert` and `--metrics-key`, which go together.
fn cert_pair(cert: Option<PathBuf>, key: Option<PathBuf>) -> Result<Option<(PathBuf, PathBuf)>> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some((c, k))),
        (None, None) => Ok(None),
        _ => bail!("--metrics-cert and --metrics-key go together"),
    }
}

/// Writes a bootstrap as YAML to `output`, or to standard output.
fn write_output(output: Option<&Path>, config: &serde_json::Value) -> Result<()> {
    let text = resources::yaml::to_yaml_text(config);
    match output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// A secret shared through a file (a token): its content without surrounding blanks.
fn read_token_file(path: &Path) -> Result<String> {
    let t = meshmetrics::auth::read_bounded(path, 8192, "token file")?;
    let t = t.trim();
    if t.is_empty() || t.len() > 8192 {
        bail!("{}: a token is 1 to 8192 characters", path.display());
    }
    Ok(t.to_owned())
}

/// Envoy resolves a bootstrap's file names against its own working directory; ours are the
/// user's, so they are written absolute.
fn absolute(p: PathBuf) -> Result<PathBuf> {
    std::path::absolute(&p).with_context(|| format!("{}: not a usable path", p.display()))
}

fn print_warnings(d: &Diagnostics) {
    for w in d.warnings() {
        eprintln!("{w}");
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Validate { files, dataplane } => {
            let res = read_resources(&files)?;
            // Each dataplane by its identity (mesh + name + namespace): never one twice.
            let names: Vec<String> = match dataplane {
                Some(d) => vec![d],
                None => res.dataplanes.iter().map(|d| d.id()).collect(),
            };
            if names.is_empty() {
                print_warnings(&res.diagnostics);
                if res.diagnostics.has_errors() {
                    bail!(meshmetrics::Invalid(res.diagnostics.clone()));
                }
                println!("[]");
                return Ok(());
            }
            let mut out = Vec::new();
            let mut diags = Diagnostics::default();
            for name in names {
                match effective(&res, &name) {
                    Ok((e, d)) => {
                        out.push(e.to_json());
                        diags.merge_unique(d);
                    }
                    Err(meshmetrics::Invalid(d)) => diags.merge_unique(d),
                }
            }
            print_warnings(&diags);
            if diags.has_errors() {
                bail!(meshmetrics::Invalid(diags));
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        Command::Bootstrap {
            dataplane,
            control_plane: Some(cp),
            mesh,
            token_file,
            ca_cert,
            output,
            admin_port,
            max_body_bytes,
            ..
        } => {
            let (host, port) = cp
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_owned(), p.parse().ok()?)))
                .with_context(|| format!("--control-plane {cp:?}: not host:port"))?;
            let generated = bootstrap::control_plane(&bootstrap::ControlPlane {
                host,
                port,
                dataplane,
                mesh,
                admin_port,
                max_body_bytes,
                token_file: token_file.map(absolute).transpose()?,
                ca_cert: ca_cert.map(absolute).transpose()?,
            })?;
            write_output(output.as_deref(), &generated.config)
        }
        Command::Bootstrap {
            dataplane,
            files,
            wasm,
            output,
            admin_port,
            timeout_ms,
            max_body_bytes,
            max_source_bytes,
            max_scrape_bytes,
            envoy_labels,
            compression,
            envoy_body,
            proxy,
            tls,
            control_plane: None,
            mesh: _,
            token_file: _,
            ca_cert: _,
        } => {
            let res = read_resources(&files)?;
            let (e, diags) = effective(&res, &dataplane)?;
            print_warnings(&diags);
            let wasm = wasm.context("--wasm is required without --control-plane")?;
            let wasm = std::fs::canonicalize(&wasm).with_context(|| {
                format!(
                    "--wasm {}: no such file (build it with scripts/build-filter)",
                    wasm.display()
                )
            })?;
            let provided_tls = cert_pair(tls.metrics_cert, tls.metrics_key)?;
            let opts = Options {
                code: bootstrap::Code::Local(wasm.clone()),
                wasm,
                delivery: bootstrap::Delivery::Files,
                certs: None,
                admin_port,
                timeout_ms,
                max_body_bytes,
                max_source_bytes,
                max_scrape_bytes,
                envoy_labels,
                compression,
                envoy_body,
                max_answering_bytes: proxy.max_answering_bytes,
                max_connections: proxy.max_metrics_connections,
                otel_ca: proxy.otel_ca,
                provided_tls,
                allow_plaintext_fallback: tls.allow_plaintext_fallback,
                mesh_ca: tls.mesh_ca,
                validity: tls.validity,
                certs_dir: tls.certs_dir.unwrap_or_else(|| {
                    output
                        .as_deref()
                        .and_then(|o| o.parent())
                        .filter(|d| !d.as_os_str().is_empty())
                        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
                }),
            };
            let generated = bootstrap::bootstrap(&e, &opts)?;
            for w in &generated.warnings {
                eprintln!("warning: {w}");
            }
            write_output(output.as_deref(), &generated.config)
        }
        Command::ControlPlane {
            files,
            xds,
            http,
            advertise_http,
            wasm,
            local_wasm,
            mesh_ca,
            cert_lifetime,
            metrics_cert,
            metrics_key,
            poll_ms,
            timeout_ms,
            compression,
            envoy_body,
            proxy,
            keys,
            revocations,
            xds_cert,
            xds_key,
            discovery_token_file,
            insecure,
            max_connections,
            max_streams_per_connection,
            max_http_connections,
        } => {
            let provided_tls = cert_pair(metrics_cert, metrics_key)?;
            let tls = match (xds_cert, xds_key) {
                (Some(c), Some(k)) => {
                    Some(meshmetrics::auth::server_tls::ServerIdentity::read(&c, &k)?)
                }
                _ => None,
            };
            let config = meshmetrics::controlplane::Config {
                files,
                xds,
                http,
                advertise_http,
                wasm,
                local_wasm,
                mesh_ca,
                provided_tls,
                cert_lifetime,
                poll: std::time::Duration::from_millis(poll_ms),
                timeout_ms,
                compression,
                envoy_body,
                max_answering_bytes: proxy.max_answering_bytes,
                max_metrics_connections: proxy.max_metrics_connections,
                otel_ca: proxy.otel_ca,
                auth: keys.map(|keys| meshmetrics::auth::Sources { keys, revocations }),
                tls,
                discovery_token: discovery_token_file
                    .as_deref()
                    .map(read_token_file)
                    .transpose()?,
                insecure,
                max_connections,
                max_streams_per_connection,
                max_http_connections,
            };
            config.check_security()?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(meshmetrics::controlplane::run(config, async {
                let _ = tokio::signal::ctrl_c().await;
            }))
        }
        Command::Serve { endpoint, listen } => {
            let (e, endpoint) = endpoint.load()?;
            if e.tls != meshmetrics::resources::metrics::TlsMode::Disabled {
                eprintln!(
                    "warning: tls.mode {} is Envoy's job; `serve` answers plaintext (for trying a configuration locally)",
                    e.tls.as_str()
                );
            }
            let listen = match listen {
                Some(l) => l,
                None => format!("{}:{}", e.address, e.port)
                    .parse()
                    .context("the dataplane's address is not an IP")?,
            };
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(meshmetrics::serve::serve(
                std::sync::Arc::new(endpoint),
                listen,
            ))
        }
        Command::Scrape {
            endpoint,
            accept,
            path,
        } => {
            let (e, endpoint) = endpoint.load()?;
            let mut headers = vec![(":authority".to_owned(), "localhost".to_owned())];
            if let Some(a) = accept {
                headers.push(("accept".to_owned(), a));
            }
            let req = meshmetrics::runtime::Request {
                method: "GET".into(),
                path: path.unwrap_or(e.path),
                headers,
            };
            let rt = tokio::runtime::Runtime::new()?;
            let answer = rt.block_on(endpoint.handle(req));
            std::io::Write::write_all(&mut std::io::stdout(), &answer.body)?;
            if answer.status != 200 {
                bail!("the filter answered HTTP {}", answer.status);
            }
            Ok(())
        }
        Command::Discovery {
            files,
            listen,
            poll_ms,
            discovery_token_file,
        } => {
            let token = discovery_token_file
                .as_deref()
                .map(read_token_file)
                .transpose()?
                .map(std::sync::Arc::<str>::from);
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
                eprintln!("meshmetrics discovery: serving on http://{listen} (POST /v3/discovery:monitoringassignments, GET /sd)");
                meshmetrics::discovery::run(files, listener, std::time::Duration::from_millis(poll_ms), token, std::future::pending()).await
            })
        }
        Command::PrometheusConfig {
            discovery,
            job,
            interval,
            tls_ca,
            tls_cert,
            tls_key,
            discovery_token_file,
            discovery_ca,
            client_id,
        } => {
            use meshmetrics::discovery::prometheus::{DiscoveryAuth, TlsFiles, scrape_config};
            if tls_cert.is_some() != tls_key.is_some() {
                bail!("--tls-cert and --tls-key go together");
            }
            let tls = TlsFiles {
                ca: tls_ca,
                cert: tls_cert,
                key: tls_key,
            };
            let auth = DiscoveryAuth {
                token_file: discovery_token_file,
                ca: discovery_ca,
                client_id,
            };
            print!(
                "{}",
                scrape_config(&discovery, &job, &interval, &tls, &auth)
            );
            Ok(())
        }
        Command::Ca {
            command: CaCommand::Init { dir, mesh },
        } => {
            let cert = meshmetrics::tls::init_ca(&dir, &mesh)?;
            println!("{}", cert.display());
            Ok(())
        }
        Command::Ca {
            command:
                CaCommand::Issue {
                    dir,
                    mesh,
                    service,
                    dns,
                    ip,
                    out,
                    validity,
                },
        } => {
            let id = meshmetrics::tls::Identity {
                spiffe: Some((mesh, service)),
                dns,
                ips: ip,
            };
            let (cert, key) = meshmetrics::tls::issue(&dir, &id, &out, validity)?;
            if let Some(w) = meshmetrics::tls::expiry_warning(
                "the issued certificate",
                (std::time::SystemTime::now() + validity)
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64),
            ) {
                eprintln!("warning: {w}");
            }
            println!("{}\n{}", cert.display(), key.display());
            Ok(())
        }
        Command::Generate {
            command: GenerateCommand::SigningKey { mesh, keys },
        } => {
            let path = meshmetrics::auth::keys::generate(&keys, &mesh)?;
            println!("{}", path.display());
            Ok(())
        }
        Command::Generate {
            command:
                GenerateCommand::DataplaneToken {
                    keys,
                    mesh,
                    dataplane,
                    valid_for,
                    output,
                },
        } => {
            let k = meshmetrics::auth::SigningKeys::load(&keys)?;
            let token = meshmetrics::auth::token::issue(&k, &mesh, &dataplane, valid_for)?;
            match output {
                Some(path) => {
                    let _ = std::fs::remove_file(&path);
                    meshmetrics::auth::keys::write_private(&path, token.as_bytes())?;
                    println!("{}", path.display());
                }
                None => println!("{token}"),
            }
            Ok(())
        }
        Command::DemoApp {
            listen,
            name,
            openmetrics,
        } => {
            let app =
                sampleapp::AppServer::start(listen, sampleapp::demo_handler(&name, openmetrics))?;
            eprintln!(
                "demo app {name:?} serving metrics on http://{}/metrics",
                app.addr
            );
            loop {
                std::thread::park();
            }
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshmetrics: {e:#}");
            ExitCode::FAILURE
        }
    }
}
