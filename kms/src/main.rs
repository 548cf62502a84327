//! `cloister-kms`: serve the KMS, print credentials, add principals, read, verify and prove
//! things about the audit log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, Subcommand};
use cloister_attestation::TrustAnchor;
use cloister_kms::audit_proof::{self, Checked, ConsistencyProof, InclusionProof};
use cloister_kms::{
    App, AuditCheck, Config, Principal, RootKey, SignedTreeHead, Store, TreeKey, TreeSigner,
    router, server_config,
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// cloister-kms: an AWS-KMS-compatible key service that releases keys only to attested enclaves.
#[derive(Debug, Parser)]
#[command(name = "cloister-kms", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the KMS.
    Serve {
        /// Data directory (created 0700): SQLite store, root.key, TLS material.
        #[arg(long)]
        data_dir: PathBuf,
        /// Plain HTTP address.
        #[arg(long, default_value = "127.0.0.1:4599")]
        listen: SocketAddr,
        /// HTTPS address (certificate from <data-dir>/tls, CA in <data-dir>/tls/ca.pem).
        #[arg(long)]
        tls_listen: Option<SocketAddr>,
        /// Region in SigV4 scopes and ARNs.
        #[arg(long, default_value = "us-east-1")]
        region: String,
        /// Account id in ARNs.
        #[arg(long, default_value = "111122223333")]
        account: String,
        /// A PEM root trusted for attestation documents besides the AWS Nitro root. Repeatable.
        #[arg(long = "trust-root", value_name = "PEM")]
        trust_roots: Vec<PathBuf>,
        /// Oldest attestation document accepted, seconds.
        #[arg(long, default_value_t = 300)]
        max_attestation_age: u64,
        /// Cryptographic requests per second per account (default: unlimited).
        #[arg(long)]
        rate: Option<f64>,
    },
    /// Print the admin principal's credentials as environment lines.
    Credentials {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Account id (used if the store is created by this command).
        #[arg(long, default_value = "111122223333")]
        account: String,
    },
    /// Manage principals.
    #[command(subcommand)]
    Principal(PrincipalCommand),
    /// Read and verify the audit log, and prove things about it.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
enum PrincipalCommand {
    /// Create a principal with fresh credentials and print them.
    Add {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Principal ARN, e.g. arn:aws:iam::111122223333:role/enclave.
        #[arg(long)]
        arn: String,
        /// Account id (used if the store is created by this command).
        #[arg(long, default_value = "111122223333")]
        account: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Print the last N entries (JSON lines).
    Tail {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// How many.
        #[arg(short = 'n', default_value_t = 20)]
        n: usize,
    },
    /// Check every entry, every stored signed tree head and, if given, a checkpoint kept
    /// elsewhere; exit 1 naming the first bad entry, head or checkpoint.
    Verify {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// A checkpoint (`audit checkpoint`'s output) the log must still extend.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// Check signatures with this public key (PEM) instead of the data directory's key.
        #[arg(long, value_name = "PEM")]
        public_key: Option<PathBuf>,
    },
    /// Print the public key (PEM) of the key that signs tree heads: keep it to check
    /// checkpoints and proofs.
    PublicKey {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Verify the log, then sign a tree head of it now and print it (JSON): keep it elsewhere.
    Checkpoint {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Verify the log, then print a proof (JSON) against a tree head signed now: that entry SEQ
    /// is in the log, or that the log extends the checkpoint of size M.
    Prove {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Prove this entry is in the log.
        #[arg(
            long,
            required_unless_present = "from_size",
            conflicts_with = "from_size"
        )]
        seq: Option<u64>,
        /// Prove the log extends a checkpoint of this many entries.
        #[arg(long, value_name = "M")]
        from_size: Option<u64>,
    },
    /// Check a proof offline, with only the KMS's public key; exit 1 if it does not hold.
    CheckProof {
        /// The KMS's tree-head public key (PEM, `audit public-key`'s output).
        #[arg(long, value_name = "PEM")]
        public_key: PathBuf,
        /// The proof (`audit prove`'s output).
        #[arg(long, value_name = "FILE")]
        proof: PathBuf,
        /// For a consistency proof (`audit prove --from-size`): the checkpoint it starts from.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
    },
}

fn print_credentials(p: &Principal) {
    println!("AWS_ACCESS_KEY_ID={}", p.access_key_id());
    println!("AWS_SECRET_ACCESS_KEY={}", p.secret());
}

fn lock_data_dir(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join("LOCK");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(_) => bail!(
            "{} is locked: another cloister-kms serves this data directory",
            dir.display()
        ),
    }
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<std::process::ExitCode> {
    match cli.command {
        Command::Serve {
            data_dir,
            listen,
            tls_listen,
            region,
            account,
            trust_roots,
            max_attestation_age,
            rate,
        } => {
            let mut roots = Vec::new();
            for p in &trust_roots {
                let pem = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                roots.extend(
                    TrustAnchor::all_from_pem(&pem).with_context(|| format!("{}", p.display()))?,
                );
            }
            let (root, store) = Store::init(&data_dir, &account)?;
            let _lock = lock_data_dir(&data_dir)?;
            let cfg = Config {
                region,
                account,
                max_attestation_age: Duration::from_secs(max_attestation_age),
                rate,
                trust_roots: roots,
            };
            let tls = match tls_listen {
                Some(addr) => Some((addr, server_config(&data_dir)?)),
                None => None,
            };
            let app = Arc::new(App::new(cfg, root, store, &data_dir)?);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(serve(app, listen, tls))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Credentials { data_dir, account } => {
            let (root, store) = Store::init(&data_dir, &account)?;
            let p = store
                .admin(&root, &account)?
                .context("no admin principal for this account")?;
            print_credentials(&p);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Principal(PrincipalCommand::Add {
            data_dir,
            arn,
            account,
        }) => {
            if !(arn.starts_with("arn:aws:iam::") || arn.starts_with("arn:aws:sts::")) {
                bail!("--arn must be an IAM or STS ARN (arn:aws:iam::<account>:...)");
            }
            let (root, store) = Store::init(&data_dir, &account)?;
            let p = store.add_principal(&root, &arn)?;
            print_credentials(&p);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Audit(cmd) => audit(cmd),
    }
}

fn audit(cmd: AuditCommand) -> Result<ExitCode> {
    match cmd {
        AuditCommand::Tail { data_dir, n } => {
            for e in open_existing(&data_dir)?.audit_tail(n)? {
                println!(
                    "{{\"seq\":{},\"hash\":\"{}\",\"entry\":{}}}",
                    e.seq, e.hash, e.json
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify {
            data_dir,
            checkpoint,
            public_key,
        } => {
            let store = open_existing(&data_dir)?;
            let key = match public_key {
                Some(p) => Some(read_public_key(&p)?),
                None if TreeSigner::exists(&data_dir) => {
                    Some(open_signer(&data_dir)?.public_key().clone())
                }
                None => None,
            };
            let checkpoint = checkpoint.map(|p| read_checkpoint(&p)).transpose()?;
            match store.verify_audit(key.as_ref(), checkpoint.as_ref())? {
                AuditCheck::Intact(s) => {
                    println!("audit log intact: {s}");
                    Ok(ExitCode::SUCCESS)
                }
                broken => Ok(report_broken(&broken)),
            }
        }
        AuditCommand::PublicKey { data_dir } => {
            open_existing(&data_dir)?;
            print!("{}", open_signer(&data_dir)?.public_key().to_pem());
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Checkpoint { data_dir } => {
            let (store, signer) = (open_existing(&data_dir)?, open_signer(&data_dir)?);
            let s = match store.verify_audit(Some(signer.public_key()), None)? {
                AuditCheck::Intact(s) => s,
                broken => return Ok(report_broken(&broken)),
            };
            println!("{}", signer.sign_now(s.entries, s.root_hash).to_json());
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Prove {
            data_dir,
            seq,
            from_size,
        } => {
            let (store, signer) = (open_existing(&data_dir)?, open_signer(&data_dir)?);
            let s = match store.verify_audit(Some(signer.public_key()), None)? {
                AuditCheck::Intact(s) => s,
                broken => return Ok(report_broken(&broken)),
            };
            let n = s.entries;
            let json = match (seq, from_size) {
                (Some(seq), _) => {
                    if seq == 0 || seq > n {
                        bail!("there is no entry {seq}: the log has {n} entries");
                    }
                    let (entry, audit_path, root) = store.audit_inclusion(seq, n)?;
                    ensure!(root == s.root_hash, "the log changed while it was read");
                    InclusionProof {
                        leaf_index: seq - 1,
                        entry,
                        audit_path,
                        tree_head: signer.sign_now(n, root),
                    }
                    .to_json()
                }
                (None, Some(m)) => {
                    if m > n {
                        bail!("the log has {n} entries, fewer than {m}");
                    }
                    let (consistency_path, root) = store.audit_consistency(m, n)?;
                    ensure!(root == s.root_hash, "the log changed while it was read");
                    ConsistencyProof {
                        from_size: m,
                        consistency_path,
                        tree_head: signer.sign_now(n, root),
                    }
                    .to_json()
                }
                (None, None) => bail!("give --seq or --from-size"),
            };
            println!("{json}");
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::CheckProof {
            public_key,
            proof,
            checkpoint,
        } => {
            let pem = read_bounded(&public_key)?;
            let proof = read_bounded(&proof)?;
            let checkpoint = checkpoint.map(|p| read_bounded(&p)).transpose()?;
            match audit_proof::check(&pem, &proof, checkpoint.as_deref()) {
                Ok(checked) => {
                    println!("{checked}");
                    if let Checked::Inclusion { entry, .. } = checked {
                        println!("{entry}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("proof REJECTED: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

/// Prints `audit verify`'s one-line verdict on a broken log; exit status 1.
fn report_broken(check: &AuditCheck) -> ExitCode {
    if let AuditCheck::Broken { at, reason } = check {
        println!("audit log BROKEN at {at}: {reason}");
    }
    ExitCode::from(1)
}

/// The data directory's tree-head signing key (created on first use), opened under its root key.
fn open_signer(dir: &Path) -> Result<TreeSigner> {
    let root_key = dir.join("root.key");
    ensure!(root_key.exists(), "no root key at {}", root_key.display());
    let root = RootKey::load_or_create(dir)?;
    Ok(TreeSigner::load_or_create(dir, &root)?)
}

/// A file given on the command line, read up to one byte past what any parser accepts (so an
/// oversized file is refused by the parser, not read whole).
fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(audit_proof::MAX_FILE_BYTES as u64 + 1)
                .read_to_end(&mut buf)
        })
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(buf)
}

fn read_public_key(path: &Path) -> Result<TreeKey> {
    TreeKey::from_pem(&read_bounded(path)?).with_context(|| format!("{}", path.display()))
}

fn read_checkpoint(path: &Path) -> Result<SignedTreeHead> {
    audit_proof::parse_checkpoint(&read_bounded(path)?)
        .with_context(|| format!("{}", path.display()))
}

fn open_existing(dir: &Path) -> Result<Store> {
    anyhow::ensure!(Store::exists(dir), "no KMS store in {}", dir.display());
    Ok(Store::open_read_only(dir)?)
}

async fn shutdown_signal(tx: watch::Sender<bool>) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot listen for SIGTERM: {e}");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
    let _ = tx.send(true);
}

async fn serve(
    app: Arc<App>,
    listen: SocketAddr,
    tls: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
) -> Result<()> {
    let router = router(app.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(shutdown_signal(stop_tx));

    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!(
        "cloister-kms listening on http://{}",
        listener.local_addr()?
    );
    let mut tasks = tokio::task::JoinSet::new();
    let mut rx = stop_rx.clone();
    let http_router = router.clone();
    tasks.spawn(async move {
        axum::serve(listener, http_router)
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await
            .map_err(anyhow::Error::from)
    });
    if let Some((addr, config)) = tls {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        tracing::info!(
            "cloister-kms listening on https://{}",
            listener.local_addr()?
        );
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let mut rx = stop_rx.clone();
        tasks.spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    r = listener.accept() => r?,
                    _ = rx.wait_for(|s| *s) => return Ok(()),
                };
                let acceptor = acceptor.clone();
                let service = hyper_util::service::TowerToHyperService::new(router.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    }
    let housekeeping_app = app.clone();
    let mut rx = stop_rx.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = rx.wait_for(|s| *s) => return Ok(()),
            }
            match housekeeping_app.housekeeping().await {
                Ok((0, 0)) => {}
                Ok((r, d)) => tracing::info!(rotated = r, deleted = d, "housekeeping"),
                Err(e) => tracing::error!("housekeeping: {e}"),
            }
        }
    });
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    tracing::info!("stopped");
    Ok(())
}
