//! `meshmetrics ca`: the mesh CA, and SPIFFE certificates it issues.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Init { dir, mesh } => {
            let cert = meshmetrics::tls::init_ca(&dir, &mesh)?;
            println!("{}", cert.display());
            Ok(())
        }
        Command::Issue {
            dir,
            mesh,
            service,
            dns,
            ip,
            out,
            validity,
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
    }
}
