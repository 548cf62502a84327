//! `cloister dev-pki init|issue|root`: the emulated NSM's development PKI from the command line.
//!
//! These commands run on the launcher's side (the "hypervisor" user): whoever can run `issue`
//! against a PKI directory can mint documents with any PCRs. Production verifiers never trust it.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use cloister_attestation::dev_signer::{DevPki, DocumentRequest};
use cloister_attestation::{PcrIndex, PcrValue, Pcrs, Timestamp};

use crate::Failure;

#[derive(Debug, Subcommand)]
pub(crate) enum DevPkiCommand {
    /// Create a dev PKI in DIR (0700; private keys 0600). Refuses to overwrite one.
    Init {
        /// Directory to create.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Print the dev root certificate (PEM), to pin with `--root` / `--trust-root`.
    Root {
        /// The PKI directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue a signed document, as the emulated NSM would, and write it (raw CBOR) to OUT.
    Issue {
        /// The PKI directory.
        #[arg(long)]
        dir: PathBuf,
        /// PCR N's value (96 hex digits). PCRs 0-15 not given are zero. Repeatable.
        #[arg(long = "pcr", value_name = "N=HEX", value_parser = crate::attest::parse_pcr)]
        pcrs: Vec<(PcrIndex, PcrValue)>,
        /// Module id.
        #[arg(long, default_value = "i-00000000000000000-enc0000000000000000")]
        module_id: String,
        /// File holding a DER public key to bind.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Nonce, hex.
        #[arg(long)]
        nonce: Option<String>,
        /// User data, hex.
        #[arg(long)]
        user_data: Option<String>,
        /// Output file.
        #[arg(short, long)]
        out: PathBuf,
    },
}

fn input(e: anyhow::Error) -> Failure {
    Failure::Input(e)
}

pub(crate) fn run(cmd: DevPkiCommand) -> Result<(), Failure> {
    match cmd {
        DevPkiCommand::Init { dir } => {
            let pki = DevPki::generate(Timestamp::now())?;
            pki.save(&dir)?;
            println!(
                "created dev PKI in {} (INSECURE: for the emulated NSM only)",
                dir.display()
            );
            Ok(())
        }
        DevPkiCommand::Root { dir } => {
            print!("{}", DevPki::load(&dir)?.root_pem());
            Ok(())
        }
        DevPkiCommand::Issue {
            dir,
            pcrs,
            module_id,
            public_key,
            nonce,
            user_data,
            out,
        } => {
            let pki = DevPki::load(&dir)?;
            let mut all = Pcrs::new();
            for i in 0..16 {
                if let Some(index) = PcrIndex::new(i) {
                    all.insert(index, PcrValue::ZERO);
                }
            }
            for (i, v) in pcrs {
                all.insert(i, v);
            }
            let hex_arg = |name: &str, v: Option<String>| -> Result<Option<Vec<u8>>, Failure> {
                v.map(|h| hex::decode(h.trim()).with_context(|| format!("--{name} is not hex")))
                    .transpose()
                    .map_err(input)
            };
            let public_key = public_key
                .map(|p| std::fs::read(&p).with_context(|| format!("reading {}", p.display())))
                .transpose()
                .map_err(input)?;
            let request = DocumentRequest {
                module_id,
                pcrs: all,
                public_key,
                user_data: hex_arg("user-data", user_data)?,
                nonce: hex_arg("nonce", nonce)?,
            };
            let doc = pki.issue(&request, Timestamp::now())?;
            std::fs::write(&out, doc)
                .with_context(|| format!("writing {}", out.display()))
                .map_err(input)?;
            Ok(())
        }
    }
}
