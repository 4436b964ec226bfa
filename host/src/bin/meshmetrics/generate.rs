//! `meshmetrics generate`: signing keys and dataplane tokens.

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

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::SigningKey { mesh, keys } => {
            let path = meshmetrics::auth::keys::generate(&keys, &mesh)?;
            println!("{}", path.display());
            Ok(())
        }
        Command::DataplaneToken {
            keys,
            mesh,
            dataplane,
            valid_for,
            output,
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
    }
}
