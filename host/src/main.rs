//! `cloister`: the command a user types on the (untrusted) host.
//!
//! This binary holds no secrets: it seals and opens records as the key owner's tool
//! (`seal`/`open`, `secrets put`), submits jobs and runs the proxy as the untrusted parent (`submit`/`proxy`),
//! runs the emulated NSM as the launcher (`nsm`), starts enclaves as their launcher (`run`,
//! `ps`, `stop`, `console`), builds and describes enclave images (`build-image`,
//! `describe-image`), and inspects and verifies attestation documents (`attest`, `dev-pki`).
//!
//! Exit codes: 0 success, 1 a document was rejected (or a command failed), 2 usage error or
//! unreadable input.

mod attest;
mod aws_env;
mod dev_pki;
mod image;
mod input;
mod launcher;
mod measure;
mod nsm;
mod pipe;
mod proxy;
mod seal;
mod secrets;
mod submit;

use std::borrow::Cow;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cloister_common::ErrorCode;

/// cloister: an attested crypto worker in the style of AWS Nitro Enclaves.
#[derive(Debug, Parser)]
#[command(name = "cloister", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect and verify AWS Nitro attestation documents.
    #[command(subcommand)]
    Attest(attest::AttestCommand),
    /// The emulated NSM's development PKI (never trusted by production verifiers).
    #[command(subcommand, name = "dev-pki")]
    DevPki(dev_pki::DevPkiCommand),
    /// The emulated NSM (launcher side).
    #[command(subcommand)]
    Nsm(nsm::NsmCommand),
    /// Forward jobs to one or more enclaves (least outstanding jobs first, health-checked, a
    /// job whose enclave died re-run on another) and relay their KMS traffic to the one allowed
    /// endpoint; `proxy status` shows a running proxy's enclaves.
    Proxy(proxy::ProxyCommand),
    /// Submit sealed files for processing in the enclave; prints results as JSON lines.
    Submit(submit::SubmitArgs),
    /// Measure an enclave image and start it (microVM, or --process), with its emulated NSM.
    Run(launcher::RunArgs),
    /// List the running enclaves (id, mode, cid, launcher pid, PCR0).
    Ps(launcher::StateArgs),
    /// Stop an enclave (SIGTERM to its launcher) and wait until it has cleaned up.
    Stop(launcher::IdArgs),
    /// Print an enclave's console log (the launcher's user only).
    Console(launcher::IdArgs),
    /// Internal: how the launcher starts its children (parent-death signal, then exec).
    #[command(name = "__spawn", hide = true)]
    Spawn(launcher::children::SpawnArgs),
    /// Seal JSON-lines records as AWS Encryption SDK messages under a KMS key.
    Seal(seal::SealArgs),
    /// Open sealed records as the key's owner (plaintext KMS Decrypt; not in an enclave).
    Open(seal::OpenArgs),
    /// Secrets for attested enclaves (values encrypted to an enclave-only KMS key).
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// Make a tokenization key (GenerateDataKeyWithoutPlaintext) for `submit --op tokenize`.
    #[command(name = "token-key")]
    TokenKey(seal::TokenKeyArgs),
    /// Build the enclave image (EIF): kernel, cmdline, the static enclave and its configuration;
    /// prints its PCRs.
    #[command(name = "build-image")]
    BuildImage(image::BuildArgs),
    /// Describe an enclave image: sections, sizes, PCRs and its configuration.
    #[command(name = "describe-image")]
    DescribeImage(image::DescribeArgs),
}

/// How a command failed, which decides the exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A document or request was refused: exit 1, `error[CODE]: message`.
    Rejected {
        code: Cow<'static, str>,
        message: String,
    },
    /// The input could not be read or decoded: exit 2.
    Input(anyhow::Error),
}

impl From<cloister_attestation::Error> for Failure {
    fn from(e: cloister_attestation::Error) -> Self {
        Self::Rejected {
            code: e.code().into(),
            message: e.to_string(),
        }
    }
}

/// Runs an async command; its failures are reported with the chain of contexts (exit 1).
fn block_on(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Input(e.into()))?;
    rt.block_on(fut).map_err(|e| Failure::Rejected {
        code: code_of(&e),
        message: format!("{e:#}"),
    })
}

/// The stable code of the first coded error in a chain, or `CLI-FAILED`.
fn code_of(e: &anyhow::Error) -> Cow<'static, str> {
    let root: &(dyn std::error::Error + 'static) = e.as_ref();
    cloister_common::code_of(root, |cause| {
        if let Some(f) = cause.downcast_ref::<submit::EnclaveFailure>() {
            return Some(Cow::Owned(f.code.clone()));
        }
        if cause.is::<submit::Incomplete>() {
            return Some(Cow::Borrowed("CLI-INCOMPLETE"));
        }
        macro_rules! coded {
            ($($t:ty),*) => {$(
                if let Some(x) = cause.downcast_ref::<$t>() {
                    return Some(ErrorCode::code(x));
                }
            )*};
        }
        coded!(
            cloister_kms_client::ClientError,
            cloister_esdk::EsdkError,
            cloister_nsm::NsmError,
            cloister_wire::WireError,
            cloister_attestation::Error,
            cloister_attestation::recipient::CmsError
        );
        None
    })
    .unwrap_or(Cow::Borrowed("CLI-FAILED"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Attest(cmd) => attest::run(cmd),
        Command::DevPki(cmd) => dev_pki::run(cmd),
        Command::Nsm(cmd) => block_on(nsm::run(cmd)),
        Command::Proxy(cmd) => block_on(proxy::run(cmd)),
        Command::Submit(args) => block_on(submit::run(args)),
        Command::Run(args) => block_on(launcher::run(args)),
        Command::Ps(args) => launcher::ps(args).map_err(Failure::Input),
        Command::Stop(args) => block_on(launcher::stop(args)),
        Command::Console(args) => launcher::console(args).map_err(Failure::Input),
        Command::Spawn(args) => launcher::children::spawn_shim(args).map_err(Failure::Input),
        Command::Seal(args) => block_on(seal::seal(args)),
        Command::Open(args) => block_on(seal::open(args)),
        Command::TokenKey(args) => block_on(seal::token_key(args)),
        Command::Secrets(cmd) => block_on(secrets::run(cmd)),
        Command::BuildImage(args) => image::build(args),
        Command::DescribeImage(args) => image::describe(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Rejected { code, message }) => {
            eprintln!("error[{code}]: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Input(e)) => {
            eprintln!("error[CLI-INPUT]: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn codes_come_from_the_innermost_coded_error_else_cli_failed() {
        let plain = anyhow::anyhow!("no code here");
        assert_eq!(super::code_of(&plain), "CLI-FAILED");
        let wrapped = anyhow::Error::from(cloister_esdk::EsdkError::Commitment)
            .context("message 3")
            .context("opening sealed.bin");
        assert_eq!(super::code_of(&wrapped), "ESDK-COMMITMENT");
    }

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
