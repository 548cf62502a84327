//! The enclave's configuration: one TOML file that lives in the image (the application ramdisk,
//! `/etc/cloister/enclave.toml`), so PCR0 and PCR2 cover everything that decides whom the
//! enclave trusts: the KMS endpoint, its TLS server name and CA, the accepted keys, the key cache
//! limits, the vsock ports, and the disclosure policy of every operation (`[operations]`, see
//! [`crate::policy`]). Nothing given at start (flags, environment) can change it.
//!
//! Two forms are read:
//! - the image's form ([`Config::from_toml`]): the CA is inline (`kms.ca_pem`); this is what the
//!   enclave reads at start, and [`Config::to_toml`] writes it (canonical: the same
//!   configuration always gives the same bytes, so the same measurements);
//! - the builder's form ([`Config::from_source`]): as above, or `kms.ca_file = "path"` (relative
//!   to the configuration file's directory), which `cloister build-image` reads and inlines.
//!
//! Unknown keys are refused everywhere, and every value is checked on load; a bad configuration
//! is an [`EnclaveError::Config`] (`ENC-CONFIG`) naming the field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cloister_kms_client::TlsConnector;
use cloister_wire::Address;
use serde::{Deserialize, Serialize};

use crate::error::EnclaveError;
use crate::job::KmsConfig;
use crate::kms::{CacheLimits, RelayConnector};
use crate::policy::Operations;
use crate::secrets::SecretSpec;

/// Largest configuration file accepted (the CA bundle dominates it).
pub const MAX_CONFIG_BYTES: usize = 256 * 1024;
/// Longest a released data key may be cached, whatever the configuration says (one day).
pub const MAX_CACHE_AGE_SECS: u64 = 24 * 60 * 60;
/// The host's vsock context id (where the relay and the emulated NSM listen).
pub const HOST_CID: u32 = 2;

/// Which NSM the enclave asks for attestation documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NsmKind {
    /// The launcher's emulated NSM on host CID 2, `vsock.nsm_port` (microVM); in process mode the
    /// socket pair the launcher hands over.
    Vsock,
    /// `/dev/nsm` (Nitro).
    Device,
}

/// How the enclave reaches the KMS and which keys it uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kms {
    /// `host:port` the enclave asks the relay for.
    pub endpoint: String,
    /// The KMS's TLS server name.
    pub server_name: String,
    /// The KMS CA (PEM, one or more certificates).
    pub ca_pem: String,
    /// KMS key ARNs whose data keys this enclave requests.
    pub accepted_keys: Vec<String>,
}

/// How long and how often a released data key may be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cache {
    /// Oldest a cached key may be, seconds (1 ..= one day).
    pub max_age_secs: u64,
    /// Most messages one released key may open (at least 1).
    pub max_uses: u32,
}

/// The vsock ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vsock {
    /// The enclave listens for jobs here.
    pub jobs_port: u32,
    /// The enclave connects to host CID 2 here for the KMS relay.
    pub relay_port: u32,
    /// The enclave connects to host CID 2 here for the emulated NSM.
    pub nsm_port: u32,
}

/// The image's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Which NSM to ask.
    pub nsm: NsmKind,
    /// The KMS.
    pub kms: Kms,
    /// The key cache.
    pub cache: Cache,
    /// The vsock ports.
    pub vsock: Vsock,
    /// The disclosure policy: which operations, reading and emitting what.
    #[serde(default)]
    pub operations: Operations,
    /// The secrets this enclave may fetch (`[[secrets]]`, see [`crate::secrets`]). Left out of
    /// the canonical form when empty, so images without secrets keep their measurements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretSpec>,
}

/// The builder's `[kms]`: the CA inline or in a file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceKms {
    endpoint: String,
    server_name: String,
    ca_pem: Option<String>,
    ca_file: Option<PathBuf>,
    accepted_keys: Vec<String>,
}

/// The builder's form of [`Config`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Source {
    nsm: NsmKind,
    kms: SourceKms,
    cache: Cache,
    vsock: Vsock,
    #[serde(default)]
    operations: Operations,
    #[serde(default)]
    secrets: Vec<SecretSpec>,
}

fn invalid(reason: impl Into<String>) -> EnclaveError {
    EnclaveError::Config(reason.into())
}

fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, EnclaveError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(invalid(format!(
            "{} bytes, more than the {MAX_CONFIG_BYTES} allowed",
            text.len()
        )));
    }
    toml::from_str(text).map_err(|e| invalid(e.to_string().trim_end().to_owned()))
}

impl Config {
    /// Reads and checks the image's form (CA inline).
    pub fn from_toml(text: &str) -> Result<Self, EnclaveError> {
        let config: Self = parse(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and checks the image's form from bytes (UTF-8 required).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EnclaveError> {
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(invalid(format!(
                "{} bytes, more than the {MAX_CONFIG_BYTES} allowed",
                bytes.len()
            )));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| invalid("not UTF-8"))?;
        Self::from_toml(text)
    }

    /// Reads and checks the builder's form: exactly one of `kms.ca_pem` and `kms.ca_file`; a
    /// relative `ca_file` is read from `base_dir` (the configuration file's directory), and its
    /// PEM is inlined.
    pub fn from_source(text: &str, base_dir: &Path) -> Result<Self, EnclaveError> {
        let source: Source = parse(text)?;
        let k = source.kms;
        let ca_pem = match (k.ca_pem, k.ca_file) {
            (Some(pem), None) => pem,
            (None, Some(file)) => {
                let path = base_dir.join(&file);
                let bytes = std::fs::read(&path).map_err(|e| {
                    invalid(format!("kms.ca_file: reading {}: {e}", path.display()))
                })?;
                String::from_utf8(bytes).map_err(|_| {
                    invalid(format!("kms.ca_file: {} is not UTF-8 PEM", path.display()))
                })?
            }
            (Some(_), Some(_)) => return Err(invalid("kms: give ca_pem or ca_file, not both")),
            (None, None) => return Err(invalid("kms: ca_pem or ca_file is required")),
        };
        let config = Self {
            nsm: source.nsm,
            kms: Kms {
                endpoint: k.endpoint,
                server_name: k.server_name,
                ca_pem,
                accepted_keys: k.accepted_keys,
            },
            cache: source.cache,
            vsock: source.vsock,
            operations: source.operations,
            secrets: source.secrets,
        };
        config.validate()?;
        Ok(config)
    }

    /// The canonical form written into the image: fixed key order, the CA inline.
    pub fn to_toml(&self) -> Result<String, EnclaveError> {
        toml::to_string(self).map_err(|e| invalid(format!("writing: {e}")))
    }

    /// Checks every value; the error names the field.
    pub fn validate(&self) -> Result<(), EnclaveError> {
        let k = &self.kms;
        let relay = Address::Vsock {
            cid: HOST_CID,
            port: self.vsock.relay_port,
        };
        let relay = RelayConnector::new(relay, &k.endpoint)
            .map_err(|_| invalid(format!("kms.endpoint {:?} is not host:port", k.endpoint)))?;
        match k.endpoint.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {}
            _ => {
                return Err(invalid(format!(
                    "kms.endpoint {:?} is not host:port",
                    k.endpoint
                )));
            }
        }
        if k.server_name.is_empty() {
            return Err(invalid("kms.server_name is empty"));
        }
        TlsConnector::new(relay, &k.server_name, k.ca_pem.as_bytes()).map_err(|e| {
            let what = if e.to_string().contains("server name") {
                "kms.server_name"
            } else {
                "kms.ca_pem"
            };
            invalid(format!("{what}: {e}"))
        })?;
        crate::policy::check_arns("kms.accepted_keys", &k.accepted_keys)?;
        let c = &self.cache;
        if c.max_age_secs == 0 || c.max_age_secs > MAX_CACHE_AGE_SECS {
            return Err(invalid(format!(
                "cache.max_age_secs {} is not in 1..={MAX_CACHE_AGE_SECS}",
                c.max_age_secs
            )));
        }
        if c.max_uses == 0 {
            return Err(invalid("cache.max_uses is 0"));
        }
        let v = &self.vsock;
        let ports = [
            ("jobs_port", v.jobs_port),
            ("relay_port", v.relay_port),
            ("nsm_port", v.nsm_port),
        ];
        for (i, (name, port)) in ports.iter().enumerate() {
            if *port == 0 || *port == u32::MAX {
                return Err(invalid(format!("vsock.{name} {port} is not a port")));
            }
            if let Some((other, _)) = ports[..i].iter().find(|(_, p)| p == port) {
                return Err(invalid(format!(
                    "vsock.{name} and vsock.{other} are both {port}"
                )));
            }
        }
        self.operations.validate()?;
        crate::secrets::validate(&self.secrets)?;
        if self.operations.secrets.is_some() && self.secrets.is_empty() {
            return Err(invalid(
                "operations.secrets allows the secrets operation but no [[secrets]] are listed",
            ));
        }
        if let Some(t) = &self.operations.tokenize
            && let crate::policy::TokenKeySource::Secret(name) = t.key_source()?
            && !self.secrets.iter().any(|s| s.name == name)
        {
            return Err(invalid(format!(
                "operations.tokenize.key_secret names {name:?}, which no [[secrets]] entry is"
            )));
        }
        Ok(())
    }

    /// The key cache limits.
    pub fn cache_limits(&self) -> CacheLimits {
        CacheLimits {
            max_age: Duration::from_secs(self.cache.max_age_secs),
            max_uses: self.cache.max_uses,
        }
    }

    /// The job's KMS settings, reaching the relay at `relay` (the transport is the only thing
    /// the caller chooses).
    pub fn kms_config(&self, relay: Address) -> KmsConfig {
        KmsConfig {
            relay,
            endpoint: self.kms.endpoint.clone(),
            server_name: self.kms.server_name.clone(),
            ca_pem: self.kms.ca_pem.as_bytes().to_vec(),
            accepted_keys: self.kms.accepted_keys.clone(),
            cache: self.cache_limits(),
        }
    }
}

#[cfg(test)]
mod tests {
    use cloister_common::ErrorCode;

    use super::*;

    const CA: &str = include_str!("../../testdata/nitro/aws_nitro_enclaves_root_g1.pem");

    fn sample(ca: &str) -> String {
        format!(
            r#"nsm = "vsock"
[kms]
endpoint = "127.0.0.1:4600"
server_name = "localhost"
ca_pem = """{ca}"""
accepted_keys = ["arn:aws:kms:eu-west-1:111122223333:key/k1"]
[cache]
max_age_secs = 300
max_uses = 10000
[vsock]
jobs_port = 5000
relay_port = 8000
nsm_port = 9000
[operations]
"#
        )
    }

    fn err(text: &str) -> String {
        let e = Config::from_toml(text).unwrap_err();
        assert_eq!(e.code(), "ENC-CONFIG", "{e}");
        e.to_string()
    }

    #[test]
    fn reads_the_sample_and_round_trips_canonically() {
        let c = Config::from_toml(&sample(CA)).unwrap();
        assert_eq!(c.nsm, NsmKind::Vsock);
        assert_eq!(c.vsock.jobs_port, 5000);
        assert_eq!(c.cache_limits().max_age, Duration::from_secs(300));
        let canonical = c.to_toml().unwrap();
        let again = Config::from_toml(&canonical).unwrap();
        assert_eq!(again, c);
        assert_eq!(again.to_toml().unwrap(), canonical);
        let kms = c.kms_config("vsock://2:8000".parse().unwrap());
        assert_eq!(kms.ca_pem, CA.as_bytes());
        assert_eq!(kms.cache.max_uses, 10_000);
        // `[operations]` may be left out.
        let without = sample(CA).replace("[operations]\n", "");
        assert_eq!(Config::from_toml(&without).unwrap(), c);
    }

    #[test]
    fn bad_configurations_name_the_field() {
        let good = sample(CA);
        let cases: &[(&str, &str, &str)] = &[
            ("nsm = \"vsock\"", "nsm = \"tcp\"", "unknown variant"),
            (
                "[operations]\n",
                "[operations]\nallow = 1\n",
                "unknown field",
            ),
            (
                "max_uses = 10000",
                "max_uses = 10000\nextra = 1",
                "unknown field",
            ),
            ("127.0.0.1:4600", "no-port", "kms.endpoint"),
            ("127.0.0.1:4600", "host:0", "kms.endpoint"),
            ("127.0.0.1:4600", "a b:1", "kms.endpoint"),
            (
                "server_name = \"localhost\"",
                "server_name = \"\"",
                "kms.server_name",
            ),
            (
                "server_name = \"localhost\"",
                "server_name = \"a b\"",
                "kms.server_name",
            ),
            (
                "\"arn:aws:kms:eu-west-1:111122223333:key/k1\"",
                "",
                "kms.accepted_keys",
            ),
            (
                "\"arn:aws:kms:eu-west-1:111122223333:key/k1\"",
                "\"k1\"",
                "not a key ARN",
            ),
            (
                "\"arn:aws:kms:eu-west-1:111122223333:key/k1\"",
                "\"arn:x\", \"arn:x\"",
                "twice",
            ),
            (
                "max_age_secs = 300",
                "max_age_secs = 0",
                "cache.max_age_secs",
            ),
            (
                "max_age_secs = 300",
                "max_age_secs = 86401",
                "cache.max_age_secs",
            ),
            ("max_uses = 10000", "max_uses = 0", "cache.max_uses"),
            ("max_uses = 10000", "max_uses = -1", "max_uses"),
            (
                "relay_port = 8000",
                "relay_port = 5000",
                "vsock.relay_port and vsock.jobs_port",
            ),
            ("nsm_port = 9000", "nsm_port = 0", "vsock.nsm_port"),
            ("jobs_port = 5000\n", "", "missing field `jobs_port`"),
        ];
        for (from, to, expected) in cases {
            assert!(good.contains(from), "{from}");
            let msg = err(&good.replacen(from, to, 1));
            assert!(msg.contains(expected), "{from} -> {to}: {msg}");
        }
        assert!(err(&sample("not a certificate")).contains("kms.ca_pem"));
        assert!(err("").contains("missing field"));
        assert!(err(&"#".repeat(MAX_CONFIG_BYTES + 1)).contains("allowed"));
        let e = Config::from_bytes(b"\xff\xfe").unwrap_err();
        assert_eq!(e.code(), "ENC-CONFIG");
    }

    #[test]
    fn secrets_are_read_checked_and_written_canonically() {
        let arn = "arn:aws:secretsmanager:us-east-1:111122223333:secret:db-AbC123";
        let key = "arn:aws:kms:us-east-1:111122223333:key/k2";
        let with = format!(
            "{}[operations.secrets]\nreport_length = true\n[[secrets]]\nname = \"db\"\n\
             source = \"secretsmanager\"\narn = \"{arn}\"\nrelease = \"recipient\"\n\
             key = \"{key}\"\n\
             [[secrets]]\nname = \"api\"\nsource = \"ssm\"\n\
             arn = \"arn:aws:ssm:us-east-1:111122223333:parameter/api\"\n\
             release = \"ciphertext\"\nkey = \"{key}\"\n",
            sample(CA).replace("[operations]\n", "")
        );
        let c = Config::from_toml(&with).unwrap();
        // Every entry names its key, path R included.
        let unkeyed = with.replacen(&format!("key = \"{key}\"\n"), "", 1);
        assert!(
            err(&unkeyed).contains("missing field `key`"),
            "{}",
            err(&unkeyed)
        );
        assert_eq!(c.secrets.len(), 2);
        assert_eq!(c.secrets[1].key, key);
        let canonical = c.to_toml().unwrap();
        assert!(canonical.contains("[[secrets]]"), "{canonical}");
        assert_eq!(Config::from_toml(&canonical).unwrap(), c);
        assert_eq!(
            Config::from_toml(&canonical).unwrap().to_toml().unwrap(),
            canonical
        );
        // A configuration without secrets is written as before (same measurements).
        let plain = Config::from_toml(&sample(CA)).unwrap().to_toml().unwrap();
        assert!(!plain.contains("secrets"), "{plain}");
        assert!(
            err(&with.replace(
                "release = \"recipient\"",
                "release = \"recipient\"\nextra = 1"
            ))
            .contains("unknown field")
        );
        assert!(err(&with.replace("name = \"api\"", "name = \"db\"")).contains("twice"));
        assert!(
            err(&with.replace(arn, "arn:aws:kms:us-east-1:111122223333:key/x"))
                .contains("secrets[0].arn")
        );
        let only_policy = with.split("[[secrets]]").next().unwrap();
        assert!(err(only_policy).contains("no [[secrets]]"));
        // A tokenization key from a secret: it must be a listed one, and exactly one source.
        let tokenize =
            |source: &str| format!("{with}[operations.tokenize]\nfields = [\"email\"]\n{source}");
        let c = Config::from_toml(&tokenize("key_secret = \"db\"\n")).unwrap();
        let t = c.operations.tokenize.as_ref().unwrap();
        assert_eq!(
            t.key_source().unwrap(),
            crate::policy::TokenKeySource::Secret("db")
        );
        assert_eq!(Config::from_toml(&c.to_toml().unwrap()).unwrap(), c);
        assert!(err(&tokenize("key_secret = \"nope\"\n")).contains("no [[secrets]] entry"));
        let both = "key_secret = \"db\"\nkey_arn = \"arn:aws:kms:us-east-1:111122223333:key/t\"\n";
        for source in [both, ""] {
            assert!(
                err(&tokenize(source)).contains("exactly one of key_arn and key_secret"),
                "{source}"
            );
        }
    }

    #[test]
    fn the_image_form_refuses_ca_file_and_the_builder_form_inlines_it() {
        let dir = std::env::temp_dir().join(format!("cloister-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), CA).unwrap();
        let with_file = sample(CA).replace(
            &format!("ca_pem = \"\"\"{CA}\"\"\""),
            "ca_file = \"ca.pem\"",
        );
        assert!(err(&with_file).contains("unknown field `ca_file`"));
        let c = Config::from_source(&with_file, &dir).unwrap();
        assert_eq!(c, Config::from_toml(&sample(CA)).unwrap());
        assert!(c.to_toml().unwrap().contains("BEGIN CERTIFICATE"));
        let missing = Config::from_source(&with_file, &dir.join("nowhere")).unwrap_err();
        assert!(missing.to_string().contains("kms.ca_file"), "{missing}");
        let both = with_file.replace("ca_file", &format!("ca_pem = \"\"\"{CA}\"\"\"\nca_file"));
        let e = Config::from_source(&both, &dir).unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
        let neither = with_file.replace("ca_file = \"ca.pem\"", "");
        let e = Config::from_source(&neither, &dir).unwrap_err();
        assert!(e.to_string().contains("required"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
