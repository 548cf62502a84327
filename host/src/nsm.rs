//! `cloister nsm describe`: asks an NSM to describe itself, a reachability check for the
//! launcher's user (e.g. on `<state>/<id>/private/nsm.sock`).
//!
//! The emulated NSM itself is run by the launcher (`cloister run`), which measures the image it
//! starts and serves the NSM only to that enclave: over a socket pair in process mode, from a
//! 0700 directory in microVM mode. There is no stand-alone NSM server: one would be an NSM
//! whose PCRs do not come from the image it serves.

use anyhow::Result;
use clap::Subcommand;
use cloister_nsm::Nsm;
use cloister_nsm::client::NsmClient;
use cloister_wire::Address;

#[derive(Debug, Subcommand)]
pub(crate) enum NsmCommand {
    /// Ask an NSM to describe itself (a reachability check).
    Describe {
        /// The NSM's address.
        #[arg(long)]
        nsm: Address,
    },
}

pub(crate) async fn run(cmd: NsmCommand) -> Result<()> {
    match cmd {
        NsmCommand::Describe { nsm } => {
            let client = NsmClient::dial(nsm);
            let (module_id, locked_pcrs) = (&client as &dyn Nsm).describe().await?;
            println!("module_id {module_id} locked {locked_pcrs:?}");
            Ok(())
        }
    }
}
