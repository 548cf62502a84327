//! `cloister-kms`: serve the KMS, print credentials, add principals, read the audit log, print the
//! attestation trust roots' fingerprints (for `cloister:RecipientAttestation:TrustRootSha256`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use cloister_attestation::TrustAnchor;
use cloister_kms::policy::KeyPolicy;
use cloister_kms::{
    App, AuditCheck, Config, Migration, Principal, RootKeyFile, Rotated, Store, router,
    server_config,
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

/// The data directory and root key of a command that opens the store.
#[derive(Debug, clap::Args)]
struct StoreArgs {
    /// Data directory (created 0700): SQLite store, TLS material, and root.key unless
    /// --root-key says otherwise.
    #[arg(long)]
    data_dir: PathBuf,
    /// The root key file (32 bytes, 0600), created only with a new store. Default:
    /// <data-dir>/root.key. Keep it outside the data directory (another volume, a secrets mount)
    /// so that a copy of the directory holds no key.
    #[arg(long, value_name = "FILE")]
    root_key: Option<PathBuf>,
}

impl StoreArgs {
    fn root_key(&self) -> RootKeyFile {
        RootKeyFile::new(&self.data_dir, self.root_key.as_deref())
    }

    /// Opens (creating if needed) the store, its root key and `account`'s admin.
    fn init(&self, account: &str) -> Result<(cloister_kms::RootKey, Store)> {
        Ok(Store::init_with_root_key(
            &self.data_dir,
            &self.root_key(),
            account,
        )?)
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the KMS.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
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
        #[command(flatten)]
        store: StoreArgs,
        /// Account id (used if the store is created by this command).
        #[arg(long, default_value = "111122223333")]
        account: String,
    },
    /// Manage principals.
    #[command(subcommand)]
    Principal(PrincipalCommand),
    /// Read the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// MAC the rows of a store from before row integrity (once, after upgrading).
    ///
    /// Every key, alias and principal row is MAC'd as it is now, so it is only as trustworthy as
    /// the file was. A server never does this on its own.
    Migrate {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print each attestation trust root's SHA-256 (the AWS Nitro root's, then each given root's):
    /// the values of the `cloister:RecipientAttestation:TrustRootSha256` condition key.
    TrustRoots {
        /// A PEM root, as `serve --trust-root` takes it. Repeatable.
        #[arg(long = "trust-root", value_name = "PEM")]
        trust_roots: Vec<PathBuf>,
    },
    /// Examine key policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage the HTTPS listener's certificate.
    #[command(subcommand)]
    Tls(TlsCommand),
}

#[derive(Debug, Subcommand)]
enum TlsCommand {
    /// Issue a new server key and certificate under the same CA (clients and enclave images
    /// that pin <data-dir>/tls/ca.pem keep working); a running server uses it from its next
    /// handshake. KMS keys are not touched.
    Rotate {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Make a new CA as well: every client, and every enclave image, must take the new
        /// ca.pem.
        #[arg(long)]
        new_ca: bool,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Report, per principal, which paths reach plaintext (Decrypt, ReEncryptFrom,
    /// GenerateDataKey*) or rewrite the policy without an attestation condition.
    Check {
        /// A key policy document (JSON file).
        #[arg(required_unless_present = "key_id", conflicts_with = "key_id")]
        file: Option<PathBuf>,
        /// The key whose stored policy to check (key id or key ARN), with --data-dir.
        #[arg(long, requires = "data_dir")]
        key_id: Option<String>,
        /// Data directory, for --key-id (its rows' integrity is checked with the root key).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The root key file, for --key-id. Default: <data-dir>/root.key.
        #[arg(long, value_name = "FILE", requires = "data_dir")]
        root_key: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum PrincipalCommand {
    /// Create a principal with fresh credentials and print them.
    Add {
        #[command(flatten)]
        store: StoreArgs,
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
    /// Check the hash chain; exit 1 naming the first bad entry.
    Verify {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
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
            store: store_args,
            listen,
            tls_listen,
            region,
            account,
            trust_roots,
            max_attestation_age,
            rate,
        } => {
            let roots = load_trust_roots(&trust_roots)?;
            for (source, anchor) in std::iter::once(&aws_root()).chain(&roots) {
                tracing::info!(
                    source = %source,
                    subject = %anchor.subject(),
                    sha256 = %hex::encode(anchor.sha256()),
                    "attestation trust root"
                );
            }
            let roots = roots.into_iter().map(|(_, a)| a).collect();
            let data_dir = &store_args.data_dir;
            let (root, store) = store_args.init(&account)?;
            let _lock = lock_data_dir(data_dir)?;
            let cfg = Config {
                region,
                account,
                max_attestation_age: Duration::from_secs(max_attestation_age),
                rate,
                trust_roots: roots,
            };
            let tls = match tls_listen {
                Some(addr) => Some((addr, server_config(data_dir)?)),
                None => None,
            };
            let app = Arc::new(App::new(cfg, root, store, data_dir)?);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(serve(app, listen, tls))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::TrustRoots { trust_roots } => {
            for (source, anchor) in
                std::iter::once(aws_root()).chain(load_trust_roots(&trust_roots)?)
            {
                println!(
                    "{}  {source}  {}",
                    hex::encode(anchor.sha256()),
                    anchor.subject()
                );
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Credentials { store, account } => {
            let (root, store) = store.init(&account)?;
            let p = store
                .admin(&root, &account)?
                .context("no admin principal for this account")?;
            print_credentials(&p);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Principal(PrincipalCommand::Add {
            store,
            arn,
            account,
        }) => {
            if !(arn.starts_with("arn:aws:iam::") || arn.starts_with("arn:aws:sts::")) {
                bail!("--arn must be an IAM or STS ARN (arn:aws:iam::<account>:...)");
            }
            let (root, store) = store.init(&account)?;
            let p = store.add_principal(&root, &arn)?;
            print_credentials(&p);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Policy(PolicyCommand::Check {
            file,
            key_id,
            data_dir,
            root_key,
            json,
        }) => {
            let text = match (file, key_id, data_dir) {
                (Some(file), _, _) => std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?,
                (None, Some(key), Some(dir)) => {
                    let id = key.rsplit_once(":key/").map_or(key.as_str(), |(_, id)| id);
                    anyhow::ensure!(Store::exists(&dir), "no KMS store in {}", dir.display());
                    let args = StoreArgs {
                        data_dir: dir,
                        root_key,
                    };
                    let root = args.root_key().load()?;
                    open_existing(&args.data_dir)?
                        .key_policy(&root, id)?
                        .with_context(|| format!("no key {key} in {}", args.data_dir.display()))?
                }
                _ => bail!("give a policy file, or --key-id with --data-dir"),
            };
            let report = KeyPolicy::parse(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", cloister_common::ErrorCode::code(&e)))?
                .check();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Tls(TlsCommand::Rotate { data_dir, new_ca }) => {
            anyhow::ensure!(
                Store::exists(&data_dir),
                "no KMS store in {}",
                data_dir.display()
            );
            let ca = data_dir.join("tls/ca.pem");
            match cloister_kms::rotate_tls(&data_dir, new_ca)? {
                Rotated::SameCa => println!(
                    "new server certificate issued under the same CA ({})",
                    ca.display()
                ),
                Rotated::NewCa => println!(
                    "new CA and server certificate: clients and enclave images must pin the new {}",
                    ca.display()
                ),
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Migrate { store } => {
            let dir = &store.data_dir;
            anyhow::ensure!(Store::exists(dir), "no KMS store in {}", dir.display());
            let _lock = lock_data_dir(dir)?;
            match Store::migrate(dir, &store.root_key())? {
                Migration::Migrated { rows } => println!(
                    "migrated {}: {rows} key, alias and principal rows MAC'd as they were",
                    dir.display()
                ),
                _ => println!("{} already has row integrity: nothing to do", dir.display()),
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Tail { data_dir, n }) => {
            for e in open_existing(&data_dir)?.audit_tail(n)? {
                println!(
                    "{{\"seq\":{},\"hash\":\"{}\",\"entry\":{}}}",
                    e.seq, e.hash, e.json
                );
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Verify { data_dir }) => {
            match open_existing(&data_dir)?.verify_audit()? {
                AuditCheck::Intact(n) => {
                    println!("audit log intact: {n} entries");
                    Ok(std::process::ExitCode::SUCCESS)
                }
                AuditCheck::Broken { seq, reason } => {
                    println!("audit log BROKEN at entry {seq}: {reason}");
                    Ok(std::process::ExitCode::from(1))
                }
            }
        }
    }
}

/// The built-in AWS Nitro Enclaves root, named as `trust-roots` prints it.
fn aws_root() -> (String, TrustAnchor) {
    (
        "aws-nitro-enclaves-root-g1".into(),
        TrustAnchor::aws_nitro_root_g1(),
    )
}

/// Every root in each `--trust-root` PEM file, with the file it came from.
fn load_trust_roots(paths: &[PathBuf]) -> Result<Vec<(String, TrustAnchor)>> {
    let mut roots = Vec::new();
    for p in paths {
        let pem = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let anchors =
            TrustAnchor::all_from_pem(&pem).with_context(|| format!("{}", p.display()))?;
        roots.extend(anchors.into_iter().map(|a| (p.display().to_string(), a)));
    }
    Ok(roots)
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
