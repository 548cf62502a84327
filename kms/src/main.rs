//! `cloister-kms`: serve the KMS, print credentials, add principals, read, verify and prove
//! things about the audit log, check key policies, rotate the TLS certificate, and print the
//! attestation trust roots' fingerprints (for `cloister:RecipientAttestation:TrustRootSha256`).

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
use cloister_kms::listen::{self, Connections, Limits, Listener};
use cloister_kms::policy::KeyPolicy;
use cloister_kms::{
    App, AuditCheck, Config, DEFAULT_UNAUTHENTICATED_AUDIT_RATE, Migration, Principal, RootKeyFile,
    Rotated, SignedTreeHead, Store, StoreUrl, TreeKey, TreeSigner, router, server_config,
};
use tokio::sync::watch;

/// mimalloc rather than glibc's malloc: every request allocates on a worker thread and frees on
/// the store's writer thread, which glibc serves with locked cross-arena frees; this keeps
/// GenerateDataKey and Decrypt at the throughput goal (see `scripts/bench-kms`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Where the store is: sqlite://<file> or postgres://user[:password]@host[:port]/db
    /// [?sslmode=verify-full&sslrootcert=<PEM>]. Default: the SQLite file in the data
    /// directory. Nodes sharing one PostgreSQL database are one KMS: give each its own data
    /// directory and the same root key. Also read from CLOISTER_KMS_STORE, which keeps a
    /// password out of the process list (`ps` shows every process's arguments to every user).
    #[arg(
        long,
        value_name = "URL",
        value_parser = StoreUrlParser,
        env = "CLOISTER_KMS_STORE",
        hide_env_values = true
    )]
    store: Option<StoreUrl>,
}

/// `--store`'s parser. Clap's own error for a refused value repeats the value, and a URL may
/// hold the database password: this one says only why (the URL shown with the password
/// replaced by `***`).
#[derive(Debug, Clone, Copy)]
struct StoreUrlParser;

impl clap::builder::TypedValueParser for StoreUrlParser {
    type Value = StoreUrl;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<StoreUrl, clap::Error> {
        let refused = |why: String| clap::Error::raw(clap::error::ErrorKind::ValueValidation, why);
        let s = value
            .to_str()
            .ok_or_else(|| refused("--store: the URL is not UTF-8\n".into()))?;
        StoreUrl::parse(s).map_err(|e| refused(format!("{e}\n")))
    }
}

impl StoreArgs {
    fn root_key(&self) -> RootKeyFile {
        RootKeyFile::new(&self.data_dir, self.root_key.as_deref())
    }

    /// Opens (creating if needed) the store, its root key and `account`'s admin.
    fn init(&self, account: &str) -> Result<(cloister_kms::RootKey, Store)> {
        Ok(Store::init_at(
            self.store.as_ref(),
            &self.data_dir,
            &self.root_key(),
            account,
        )?)
    }

    /// Opens the existing store for reading.
    fn open_existing(&self) -> Result<Store> {
        Ok(Store::open_existing(self.store.as_ref(), &self.data_dir)?)
    }

    /// A shared store's root key (its audit entries carry MACs under it), else none.
    fn shared_root(&self) -> Result<Option<cloister_kms::RootKey>> {
        if matches!(self.store, Some(StoreUrl::Postgres(_))) {
            return Ok(Some(self.root_key().load()?));
        }
        Ok(None)
    }

    /// The tree-head signing key: a shared store's (in the database), else the data
    /// directory's (created on first use); opened under the root key.
    fn signer(&self, store: &Store) -> Result<TreeSigner> {
        let root = self.root_key().load()?;
        if matches!(self.store, Some(StoreUrl::Postgres(_))) {
            return Ok(store.shared_signer(&root)?);
        }
        Ok(TreeSigner::load_or_create(&self.data_dir, &root)?)
    }
}

/// `serve`'s flags (boxed in [`Command`]: they are most of its size).
#[derive(Debug, clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Plain HTTP address.
    #[arg(long, default_value = "127.0.0.1:4599")]
    listen: SocketAddr,
    /// HTTPS address (certificate from <data-dir>/tls, CA in <data-dir>/tls/ca.pem).
    #[arg(long)]
    tls_listen: Option<SocketAddr>,
    /// The home region, in SigV4 scopes and ARNs.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Another region this deployment serves besides --region, for Multi-Region keys
    /// (ReplicateKey, UpdatePrimaryRegion). Repeatable. A request's SigV4 scope must name
    /// one of the served regions; it sees that region's keys and aliases only.
    #[arg(long = "replica-region", value_name = "REGION")]
    replica_regions: Vec<String>,
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
    #[command(flatten)]
    limits: LimitFlags,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the KMS.
    Serve(Box<ServeArgs>),
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
    /// Read and verify the audit log, and prove things about it.
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
        /// The store, for --key-id (as `serve --store`). Default: the data directory's.
        #[arg(long, value_name = "URL", requires = "data_dir", value_parser = StoreUrlParser)]
        store: Option<StoreUrl>,
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
        #[command(flatten)]
        store: StoreArgs,
        /// How many.
        #[arg(short = 'n', default_value_t = 20)]
        n: usize,
    },
    /// Check every entry, every stored signed tree head and, if given, a checkpoint kept
    /// elsewhere; exit 1 naming the first bad entry, head or checkpoint.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
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
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Verify the log, then sign a tree head of it now and print it (JSON): keep it elsewhere.
    Checkpoint {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Verify the log, then print a proof (JSON) against a tree head signed now: that entry SEQ
    /// is in the log, or that the log extends the checkpoint of size M.
    Prove {
        #[command(flatten)]
        store: StoreArgs,
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

/// What one client may hold of the server (see `cloister_kms::listen`).
#[derive(Debug, clap::Args)]
struct LimitFlags {
    /// A request head must be complete this long after its first byte (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    header_timeout: Duration,
    /// Close a connection with no request in progress, or whose client stops reading, after this.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// A TLS handshake must be complete this long after the connection is accepted.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    tls_handshake_timeout: Duration,
    /// A request body must have arrived this long after its head.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    body_timeout: Duration,
    /// Connections open at once over all listeners; more are closed on arrival.
    #[arg(long, default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..=listen::MAX_CONNECTIONS as i64))]
    max_connections: u32,
    /// Largest request head (request line and headers), bytes; larger ones get 431.
    #[arg(long, default_value_t = 32768,
          value_parser = clap::value_parser!(u32).range(listen::MIN_HEADER_BYTES as i64..=1 << 24))]
    max_header_bytes: u32,
    /// Unauthenticated requests audited one by one per second; the rest are counted in a
    /// summary entry.
    #[arg(long, default_value_t = DEFAULT_UNAUTHENTICATED_AUDIT_RATE)]
    unauthenticated_audit_rate: f64,
}

impl LimitFlags {
    fn limits(&self) -> Limits {
        Limits {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            tls_handshake_timeout: self.tls_handshake_timeout,
            body_timeout: self.body_timeout,
            max_connections: self.max_connections as usize,
            max_header_bytes: self.max_header_bytes as usize,
        }
    }
}

/// Longest timeout accepted.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// `10s`, `500ms`, `2m`, or a number of seconds; between 1 ms and a day.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s, 500ms or 2m"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(format!("{text:?}: the unit must be ms, s or m")),
    };
    if d.is_zero() || d > MAX_TIMEOUT {
        return Err(format!("{text:?} must be between 1ms and 24h"));
    }
    Ok(d)
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
        Command::Serve(args) => {
            let ServeArgs {
                store: store_args,
                listen,
                tls_listen,
                region,
                replica_regions,
                account,
                trust_roots,
                max_attestation_age,
                rate,
                limits,
            } = *args;
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
                replica_regions,
                account,
                max_attestation_age: Duration::from_secs(max_attestation_age),
                rate,
                trust_roots: roots,
            };
            let tls = match tls_listen {
                Some(addr) => Some((addr, server_config(data_dir)?)),
                None => None,
            };
            let app = Arc::new(
                App::new(cfg, root, store, data_dir)?
                    .with_unauthenticated_audit_rate(limits.unauthenticated_audit_rate),
            );
            let limits = limits.limits();
            match listen::raise_open_files(limits.max_connections) {
                Ok((soft, want)) if soft < want => tracing::warn!(
                    "at most {soft} open files (the hard limit): --max-connections {} needs {want}; \
                     connections beyond the system's limit are refused",
                    limits.max_connections
                ),
                Ok((soft, _)) => tracing::info!("open files: at most {soft}"),
                Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(serve(app, listen, tls, limits))?;
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
            store,
            json,
        }) => {
            let (text, grants) = match (file, key_id, data_dir) {
                (Some(file), _, _) => (
                    std::fs::read_to_string(&file)
                        .with_context(|| format!("reading {}", file.display()))?,
                    Vec::new(),
                ),
                (None, Some(key), Some(dir)) => {
                    let id = key.rsplit_once(":key/").map_or(key.as_str(), |(_, id)| id);
                    let args = StoreArgs {
                        data_dir: dir,
                        root_key,
                        store,
                    };
                    let root = args.root_key().load()?;
                    let store = args.open_existing()?;
                    let text = store
                        .key_policy(&root, id)?
                        .with_context(|| format!("no key {key} in {}", args.data_dir.display()))?;
                    (text, store.key_grants(&root, id)?)
                }
                _ => bail!("give a policy file, or --key-id with --data-dir"),
            };
            let report = KeyPolicy::parse(&text)
                .and_then(|p| p.check_with_grants(&grants))
                .map_err(|e| anyhow::anyhow!("{}: {e}", cloister_common::ErrorCode::code(&e)))?;
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
            if matches!(store.store, Some(StoreUrl::Postgres(_))) {
                bail!(
                    "a PostgreSQL store needs no `migrate`: it was made with row integrity, and each node brings its schema up to date at start"
                );
            }
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
        Command::Audit(cmd) => audit(cmd),
    }
}

fn audit(cmd: AuditCommand) -> Result<ExitCode> {
    match cmd {
        AuditCommand::Tail { store, n } => {
            for e in store.open_existing()?.audit_tail(n)? {
                println!(
                    "{{\"seq\":{},\"hash\":\"{}\",\"entry\":{}}}",
                    e.seq, e.hash, e.json
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify {
            store: args,
            checkpoint,
            public_key,
        } => {
            let store = args.open_existing()?;
            let key = match public_key {
                Some(p) => Some(read_public_key(&p)?),
                None if args.store.is_some() || TreeSigner::exists(&args.data_dir) => {
                    Some(args.signer(&store)?.public_key().clone())
                }
                None => None,
            };
            let checkpoint = checkpoint.map(|p| read_checkpoint(&p)).transpose()?;
            match store.verify_audit(
                key.as_ref(),
                checkpoint.as_ref(),
                args.shared_root()?.as_ref(),
            )? {
                AuditCheck::Intact(s) => {
                    println!("audit log intact: {s}");
                    Ok(ExitCode::SUCCESS)
                }
                broken => Ok(report_broken(&broken)),
            }
        }
        AuditCommand::PublicKey { store: args } => {
            let store = args.open_existing()?;
            print!("{}", args.signer(&store)?.public_key().to_pem());
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Checkpoint { store: args } => {
            let store = args.open_existing()?;
            let signer = args.signer(&store)?;
            let s = match store.verify_audit(
                Some(signer.public_key()),
                None,
                args.shared_root()?.as_ref(),
            )? {
                AuditCheck::Intact(s) => s,
                broken => return Ok(report_broken(&broken)),
            };
            println!("{}", signer.sign_now(s.entries, s.root_hash).to_json());
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Prove {
            store: args,
            seq,
            from_size,
        } => {
            let store = args.open_existing()?;
            let signer = args.signer(&store)?;
            let s = match store.verify_audit(
                Some(signer.public_key()),
                None,
                args.shared_root()?.as_ref(),
            )? {
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

/// Prints `audit verify`'s one-line verdict on a broken log; exit status 1.
fn report_broken(check: &AuditCheck) -> ExitCode {
    if let AuditCheck::Broken { at, reason } = check {
        println!("audit log BROKEN at {at}: {reason}");
    }
    ExitCode::from(1)
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

/// Installs the SIGTERM and SIGINT handlers now, before the server says it is listening (a
/// signal arriving before a handler is installed would kill the process without its clean stop),
/// and returns the task that waits for either and then asks the server to stop.
fn shutdown_signal(
    tx: watch::Sender<bool>,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        let _ = tx.send(true);
    })
}

/// How often counted unauthenticated requests are audited as one entry.
const UNAUDITED_EVERY: Duration = Duration::from_secs(10);
/// How often a node of a shared store says it is alive (see `App::heartbeat`).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// How long stopping waits for open connections to finish.
const STOP_GRACE: Duration = Duration::from_secs(10);

async fn serve(
    app: Arc<App>,
    listen: SocketAddr,
    tls: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
    limits: Limits,
) -> Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(shutdown_signal(stop_tx)?);
    let limits = Arc::new(limits);
    let connections = Connections::new(limits.max_connections);

    let mut listeners = vec![Listener::http(listen).with_context(|| format!("binding {listen}"))?];
    if let Some((addr, config)) = tls {
        listeners.push(Listener::https(addr, &config).with_context(|| format!("binding {addr}"))?);
    }
    tracing::info!("limits: {limits}");
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        let addr = listener.local_addr();
        match listener.transport() {
            listen::Transport::Tls => tracing::info!("cloister-kms listening on https://{addr}"),
            listen::Transport::LoopbackCleartext => {
                tracing::info!("cloister-kms listening on http://{addr}");
            }
            listen::Transport::PublicCleartext => {
                tracing::warn!(
                    "--listen {addr} is not a loopback address: requests and answers cross the \
                     network in cleartext, so operations that answer with plaintext (Decrypt, \
                     GenerateDataKey, GenerateRandom without a Recipient) are refused on it; \
                     serve them with --tls-listen"
                );
                tracing::info!("cloister-kms listening on http://{addr}");
            }
        }
        let router = router(app.clone(), listener.transport());
        tasks.spawn(listen::serve(
            listener,
            router,
            limits.clone(),
            connections.clone(),
            stop_rx.clone(),
        ));
    }
    let beating = app.clone();
    let mut rx = stop_rx.clone();
    tasks.spawn(async move {
        let mut last_nodes = 1;
        loop {
            tokio::select! {
                () = tokio::time::sleep(HEARTBEAT_EVERY) => {}
                _ = rx.wait_for(|s| *s) => return,
            }
            match beating.heartbeat() {
                Ok(nodes) if nodes != last_nodes => {
                    tracing::info!(
                        "{nodes} node(s) of the shared store alive: the rate limit is divided among them"
                    );
                    last_nodes = nodes;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("shared store heartbeat: {e}"),
            }
        }
    });
    let background = app.clone();
    let mut rx = stop_rx.clone();
    tasks.spawn(async move {
        let mut since_housekeeping = Duration::ZERO;
        loop {
            tokio::select! {
                () = tokio::time::sleep(UNAUDITED_EVERY) => {}
                _ = rx.wait_for(|s| *s) => return,
            }
            if let Err(e) = background.audit_unaudited().await {
                tracing::error!("auditing unauthenticated requests: {e}");
            }
            since_housekeeping += UNAUDITED_EVERY;
            if since_housekeeping < Duration::from_secs(60) {
                continue;
            }
            since_housekeeping = Duration::ZERO;
            match background.housekeeping().await {
                Ok((0, 0)) => {}
                Ok((r, d)) => tracing::info!(rotated = r, deleted = d, "housekeeping"),
                Err(e) => tracing::error!("housekeeping: {e}"),
            }
        }
    });
    while let Some(r) = tasks.join_next().await {
        r?;
    }
    let open = connections.drained(STOP_GRACE).await;
    if open > 0 {
        tracing::warn!("{open} connections still open after {STOP_GRACE:?}; closing them");
    }
    if let Err(e) = app.audit_unaudited().await {
        tracing::error!("auditing unauthenticated requests: {e}");
    }
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_bounds() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        for bad in ["", "0s", "s", "10h", "-1s", "1.5s", "25000m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn replica_regions_are_repeatable_and_default_to_none() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["cloister-kms", "serve", "--data-dir", "/x"];
            argv.extend_from_slice(extra);
            let Command::Serve(args) = Cli::try_parse_from(argv).unwrap().command else {
                panic!("not serve");
            };
            args.replica_regions
        };
        assert!(parse(&[]).is_empty());
        assert_eq!(
            parse(&[
                "--replica-region",
                "us-west-2",
                "--replica-region",
                "eu-west-1"
            ]),
            ["us-west-2", "eu-west-1"]
        );
    }

    #[test]
    fn the_limit_flags_have_sane_defaults() {
        let cli = Cli::try_parse_from(["cloister-kms", "serve", "--data-dir", "/x"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        let l = args.limits.limits();
        assert_eq!(
            (
                l.header_timeout,
                l.idle_timeout,
                l.max_connections,
                l.max_header_bytes
            ),
            (Duration::from_secs(10), Duration::from_secs(30), 512, 32768)
        );
        assert!(
            Cli::try_parse_from([
                "cloister-kms",
                "serve",
                "--data-dir",
                "/x",
                "--max-header-bytes",
                "100"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "cloister-kms",
                "serve",
                "--data-dir",
                "/x",
                "--max-connections",
                "0"
            ])
            .is_err()
        );
    }
}
