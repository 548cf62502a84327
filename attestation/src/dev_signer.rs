//! **Development only.** The signer behind cloister's *emulated* NSM.
//!
//! On Nitro, documents are signed by the hypervisor with a key chained to the AWS root. Outside
//! Nitro (process mode, QEMU microVMs) the emulated NSM signs with this dev PKI instead, shaped
//! like AWS's: a P-384 root, an intermediate CA, and a leaf valid for 3 hours that signs the COSE
//! envelope. Its documents go through exactly the same verification code; they verify only where
//! an operator pinned the dev root on purpose, and fail with `ATT-ROOT` against the AWS root.
//!
//! Anyone who can read the dev PKI's private keys, or talk to the service that holds them, can
//! mint documents with any PCRs. Keep the directory (0700, keys 0600) with the launcher's user.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P384_SHA384, SerialNumber,
};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::cose;
use crate::document::AttestationDocument;
use crate::error::{Error, Result};
use crate::pcr::Pcrs;
use crate::roots::TrustAnchor;
use crate::time::Timestamp;

/// File names inside a dev PKI directory.
pub const ROOT_CERT_FILE: &str = "root.pem";
/// The root's private key (mode 0600).
pub const ROOT_KEY_FILE: &str = "root.key";
/// The intermediate CA's certificate.
pub const INTERMEDIATE_CERT_FILE: &str = "intermediate.pem";
/// The intermediate CA's private key (mode 0600).
pub const INTERMEDIATE_KEY_FILE: &str = "intermediate.key";

/// How long a leaf is valid, as on Nitro.
pub const LEAF_LIFETIME: Duration = Duration::from_secs(3 * 3600);
/// A leaf is replaced when less than this remains, so a fresh document has a usable chain.
const LEAF_MIN_REMAINING: Duration = Duration::from_secs(30 * 60);
const ROOT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86400);
const INTERMEDIATE_LIFETIME: Duration = Duration::from_secs(5 * 365 * 86400);
const BACKDATE: Duration = Duration::from_secs(86400);

/// What the enclave asks to have attested, plus the measurements the emulator computed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocumentRequest {
    /// The NSM module id.
    pub module_id: String,
    /// The locked PCRs.
    pub pcrs: Pcrs,
    /// DER public key to bind.
    pub public_key: Option<Vec<u8>>,
    /// Application data to bind.
    pub user_data: Option<Vec<u8>>,
    /// Challenge to bind.
    pub nonce: Option<Vec<u8>>,
}

struct Leaf {
    cert_der: Vec<u8>,
    key: EcdsaKeyPair,
    not_before: Timestamp,
    not_after: Timestamp,
}

/// A dev PKI: root and intermediate, and the current leaf. **Not for production.**
pub struct DevPki {
    root_der: Vec<u8>,
    root_key_pem: Zeroizing<String>,
    intermediate_der: Vec<u8>,
    intermediate_key_pem: Zeroizing<String>,
    leaf: Mutex<Option<Leaf>>,
}

impl std::fmt::Debug for DevPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevPki")
            .field("root_sha256", &hex::encode(self.trust_anchor_sha256()))
            .finish_non_exhaustive()
    }
}

fn pki_err(context: &str) -> impl Fn(rcgen::Error) -> Error + '_ {
    move |e| Error::DevPki(format!("{context}: {e}"))
}

fn datetime(t: Timestamp) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t.as_secs())
        .map_err(|e| Error::DevPki(format!("time: {e}")))
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::OrganizationName, "cloister (INSECURE DEV PKI)");
    dn.push(DnType::OrganizationalUnitName, "emulated-nsm");
    dn.push(DnType::CommonName, cn);
    dn
}

fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::DevPki("no randomness".into()))?;
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // and not zero-led
    Ok(SerialNumber::from_slice(&bytes))
}

fn ca_params(
    cn: &str,
    path_len: Option<u8>,
    from: Timestamp,
    until: Timestamp,
) -> Result<CertificateParams> {
    let mut p = CertificateParams::default();
    p.distinguished_name = name(cn);
    p.is_ca = IsCa::Ca(path_len.map_or(
        BasicConstraints::Unconstrained,
        BasicConstraints::Constrained,
    ));
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    p.not_before = datetime(from)?;
    p.not_after = datetime(until)?;
    p.serial_number = Some(random_serial()?);
    Ok(p)
}

fn ec_key() -> Result<KeyPair> {
    KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(pki_err("key generation"))
}

impl DevPki {
    /// Creates a new dev PKI whose certificates are valid from a day before `now`.
    pub fn generate(now: Timestamp) -> Result<Self> {
        let from = now.minus(BACKDATE);
        let root_key = ec_key()?;
        let root_params = ca_params(
            "cloister-dev.nitro-enclaves (INSECURE DEV ROOT)",
            None,
            from,
            now.plus(ROOT_LIFETIME),
        )?;
        let root = root_params
            .self_signed(&root_key)
            .map_err(pki_err("root certificate"))?;
        let int_key = ec_key()?;
        let int_params = ca_params(
            "intermediate.cloister-dev.nitro-enclaves",
            Some(1),
            from,
            now.plus(INTERMEDIATE_LIFETIME),
        )?;
        let issuer = Issuer::new(root_params, &root_key);
        let intermediate = int_params
            .signed_by(&int_key, &issuer)
            .map_err(pki_err("intermediate certificate"))?;
        Ok(Self {
            root_der: root.der().to_vec(),
            root_key_pem: Zeroizing::new(root_key.serialize_pem()),
            intermediate_der: intermediate.der().to_vec(),
            intermediate_key_pem: Zeroizing::new(int_key.serialize_pem()),
            leaf: Mutex::new(None),
        })
    }

    /// Saves the PKI into `dir` (created 0700 if missing; keys written 0600). Refuses to overwrite
    /// an existing PKI.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let io = |what: &str, p: &Path, e: std::io::Error| {
            Error::DevPki(format!("{what} {}: {e}", p.display()))
        };
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io("cannot create", dir, e))?;
        }
        check_private_dir(dir)?;
        let root_pem = pem("CERTIFICATE", &self.root_der);
        let intermediate_pem = pem("CERTIFICATE", &self.intermediate_der);
        let files: [(&str, &[u8], u32); 4] = [
            (ROOT_CERT_FILE, root_pem.as_bytes(), 0o644),
            (INTERMEDIATE_CERT_FILE, intermediate_pem.as_bytes(), 0o644),
            (ROOT_KEY_FILE, self.root_key_pem.as_bytes(), 0o600),
            (
                INTERMEDIATE_KEY_FILE,
                self.intermediate_key_pem.as_bytes(),
                0o600,
            ),
        ];
        for (file, _, _) in &files {
            let path = dir.join(file);
            if path.exists() {
                return Err(Error::DevPki(format!(
                    "refusing to overwrite {}",
                    path.display()
                )));
            }
        }
        for (file, bytes, mode) in files {
            cloister_common::fs::write_atomically(&dir.join(file), bytes, mode)
                .map_err(|e| io("cannot write", &dir.join(file), e))?;
        }
        Ok(())
    }

    /// Loads a PKI saved by [`DevPki::save`]. Whoever can write the PKI can mint documents, so
    /// it refuses a directory or a file that is not this user's, a directory that group or
    /// others can reach, private keys readable by group or others, and symbolic links.
    pub fn load(dir: &Path) -> Result<Self> {
        check_private_dir(dir)?;
        let read = |file: &str, secret: bool| -> Result<Zeroizing<String>> {
            let path = dir.join(file);
            let meta = fs::symlink_metadata(&path)
                .map_err(|e| Error::DevPki(format!("{}: {e}", path.display())))?;
            if !meta.file_type().is_file() || meta.uid() != nix::unistd::geteuid().as_raw() {
                return Err(Error::DevPki(format!(
                    "{} is not a regular file owned by this user",
                    path.display()
                )));
            }
            if secret && meta.permissions().mode() & 0o077 != 0 {
                return Err(Error::DevPki(format!(
                    "{} is accessible to group or others (mode {:o}); it must be 0600",
                    path.display(),
                    meta.permissions().mode() & 0o777
                )));
            }
            fs::read_to_string(&path)
                .map(Zeroizing::new)
                .map_err(|e| Error::DevPki(format!("{}: {e}", path.display())))
        };
        let root = TrustAnchor::from_pem(&read(ROOT_CERT_FILE, false)?)?;
        let intermediate = TrustAnchor::from_pem(&read(INTERMEDIATE_CERT_FILE, false)?)?;
        let pki = Self {
            root_der: root.der().to_vec(),
            root_key_pem: read(ROOT_KEY_FILE, true)?,
            intermediate_der: intermediate.der().to_vec(),
            intermediate_key_pem: read(INTERMEDIATE_KEY_FILE, true)?,
            leaf: Mutex::new(None),
        };
        pki.check_keys_match()?;
        Ok(pki)
    }

    /// Loads the PKI in `dir`, or creates and saves one there if the directory holds none.
    pub fn load_or_generate(dir: &Path, now: Timestamp) -> Result<Self> {
        if dir.join(ROOT_CERT_FILE).exists() {
            return Self::load(dir);
        }
        let pki = Self::generate(now)?;
        pki.save(dir)?;
        Ok(pki)
    }

    fn check_keys_match(&self) -> Result<()> {
        for (cert, key_pem, what) in [
            (&self.root_der, &self.root_key_pem, "root"),
            (
                &self.intermediate_der,
                &self.intermediate_key_pem,
                "intermediate",
            ),
        ] {
            let key = KeyPair::from_pem(key_pem).map_err(pki_err(what))?;
            let (_, parsed) = x509_parser::parse_x509_certificate(cert)
                .map_err(|e| Error::DevPki(format!("{what} certificate: {e}")))?;
            if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
                return Err(Error::DevPki(format!(
                    "{what} key does not match its certificate"
                )));
            }
        }
        Ok(())
    }

    /// The dev root, to pin in a verifier that should accept this PKI's documents.
    pub fn trust_anchor(&self) -> Result<TrustAnchor> {
        TrustAnchor::from_der(&self.root_der)
    }

    fn trust_anchor_sha256(&self) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(&self.root_der).into()
    }

    /// The dev root in PEM.
    pub fn root_pem(&self) -> String {
        pem("CERTIFICATE", &self.root_der)
    }

    /// A leaf valid at `now` for at least [`LEAF_MIN_REMAINING`], issuing a new one if needed.
    fn with_leaf<T>(&self, now: Timestamp, f: impl FnOnce(&Leaf) -> Result<T>) -> Result<T> {
        let mut slot = self.leaf.lock().unwrap_or_else(PoisonError::into_inner);
        let usable = slot
            .as_ref()
            .is_some_and(|l| l.not_before <= now && now.plus(LEAF_MIN_REMAINING) <= l.not_after);
        if !usable {
            *slot = Some(self.new_leaf(now)?);
        }
        match slot.as_ref() {
            Some(leaf) => f(leaf),
            None => Err(Error::DevPki("no leaf".into())),
        }
    }

    fn new_leaf(&self, now: Timestamp) -> Result<Leaf> {
        let int_key =
            KeyPair::from_pem(&self.intermediate_key_pem).map_err(pki_err("intermediate key"))?;
        let issuer = Issuer::from_ca_cert_der(&self.intermediate_der.as_slice().into(), &int_key)
            .map_err(pki_err("intermediate certificate"))?;
        let leaf_key = ec_key()?;
        // Like Nitro: valid from 3 s before issue, for 3 hours.
        let not_before = now.minus(Duration::from_secs(3));
        let not_after = now.plus(LEAF_LIFETIME);
        let mut p = CertificateParams::default();
        p.distinguished_name = name("leaf.cloister-dev.nitro-enclaves");
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
        p.not_before = datetime(not_before)?;
        p.not_after = datetime(not_after)?;
        p.serial_number = Some(random_serial()?);
        let cert = p
            .signed_by(&leaf_key, &issuer)
            .map_err(pki_err("leaf certificate"))?;
        let pkcs8 = Zeroizing::new(leaf_key.serialize_der());
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &pkcs8)
            .map_err(|e| Error::DevPki(format!("leaf key: {e}")))?;
        Ok(Leaf {
            cert_der: cert.der().to_vec(),
            key,
            not_before: Timestamp::from_secs(u64::try_from(not_before.as_secs()).unwrap_or(0)),
            not_after: Timestamp::from_secs(u64::try_from(not_after.as_secs()).unwrap_or(0)),
        })
    }

    /// Issues a signed attestation document for `request`, timestamped `now`.
    pub fn issue(&self, request: &DocumentRequest, now: Timestamp) -> Result<Vec<u8>> {
        self.with_leaf(now, |leaf| {
            let doc = AttestationDocument {
                module_id: request.module_id.clone(),
                timestamp: now,
                pcrs: request.pcrs.clone(),
                certificate: leaf.cert_der.clone(),
                cabundle: vec![self.root_der.clone(), self.intermediate_der.clone()],
                public_key: request.public_key.clone(),
                user_data: request.user_data.clone(),
                nonce: request.nonce.clone(),
            };
            let payload = doc.to_payload();
            // Round-trip through the parser so the emulator never emits what a verifier refuses.
            AttestationDocument::from_payload(&payload)?;
            let tbs = cose::sig_structure(&cose::ES384_PROTECTED, &payload);
            let sig = leaf
                .key
                .sign(&SystemRandom::new(), &tbs)
                .map_err(|_| Error::DevPki("signing failed".into()))?;
            let sig = <[u8; cose::SIGNATURE_LEN]>::try_from(sig.as_ref())
                .map_err(|_| Error::DevPki("signature is not 96 bytes".into()))?;
            Ok(cose::encode_untagged(&payload, &sig))
        })
    }
}

/// The PKI's directory must be a real directory (not a link), this user's, and closed to group
/// and others: otherwise another user could replace its keys and mint documents.
fn check_private_dir(dir: &Path) -> Result<()> {
    let meta =
        fs::symlink_metadata(dir).map_err(|e| Error::DevPki(format!("{}: {e}", dir.display())))?;
    if !meta.file_type().is_dir() {
        return Err(Error::DevPki(format!(
            "{} is not a directory (a symbolic link is refused)",
            dir.display()
        )));
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(Error::DevPki(format!(
            "{} is owned by uid {}, not by this user",
            dir.display(),
            meta.uid()
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::DevPki(format!(
            "{} is accessible to group or others (mode {:o}); it must be 0700",
            dir.display(),
            meta.permissions().mode() & 0o777
        )));
    }
    Ok(())
}

fn pem(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}
