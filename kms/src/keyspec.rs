//! What kind of key a KMS key is: its `KeySpec`, `KeyUsage` and `Origin`, with AWS's names and
//! the combinations AWS allows, and the key's extended attributes ([`KeyAttrs`]) that the store
//! keeps as one MAC'd JSON column.
//!
//! AWS's rules (API reference, CreateKey): symmetric keys are ENCRYPT_DECRYPT; RSA keys are
//! ENCRYPT_DECRYPT or SIGN_VERIFY; NIST ECC keys SIGN_VERIFY or KEY_AGREEMENT; ECC_SECG_P256K1
//! SIGN_VERIFY only; HMAC keys GENERATE_VERIFY_MAC only. Only SYMMETRIC_DEFAULT keys may have
//! imported material (Origin EXTERNAL) in this KMS, as AWS allowed until asymmetric and HMAC
//! import came; see the README's list of differences.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A key's `KeySpec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub(crate) enum KeySpec {
    /// AES-256-GCM, the KMS's own ciphertext format.
    #[default]
    #[serde(rename = "SYMMETRIC_DEFAULT")]
    SymmetricDefault,
    /// RSA 2048.
    #[serde(rename = "RSA_2048")]
    Rsa2048,
    /// RSA 3072.
    #[serde(rename = "RSA_3072")]
    Rsa3072,
    /// RSA 4096.
    #[serde(rename = "RSA_4096")]
    Rsa4096,
    /// NIST P-256.
    #[serde(rename = "ECC_NIST_P256")]
    EccNistP256,
    /// NIST P-384.
    #[serde(rename = "ECC_NIST_P384")]
    EccNistP384,
    /// NIST P-521.
    #[serde(rename = "ECC_NIST_P521")]
    EccNistP521,
    /// secp256k1.
    #[serde(rename = "ECC_SECG_P256K1")]
    EccSecgP256k1,
    /// HMAC with SHA-224.
    #[serde(rename = "HMAC_224")]
    Hmac224,
    /// HMAC with SHA-256.
    #[serde(rename = "HMAC_256")]
    Hmac256,
    /// HMAC with SHA-384.
    #[serde(rename = "HMAC_384")]
    Hmac384,
    /// HMAC with SHA-512.
    #[serde(rename = "HMAC_512")]
    Hmac512,
}

impl KeySpec {
    /// Every spec this KMS creates keys of.
    pub(crate) const ALL: [Self; 12] = [
        Self::SymmetricDefault,
        Self::Rsa2048,
        Self::Rsa3072,
        Self::Rsa4096,
        Self::EccNistP256,
        Self::EccNistP384,
        Self::EccNistP521,
        Self::EccSecgP256k1,
        Self::Hmac224,
        Self::Hmac256,
        Self::Hmac384,
        Self::Hmac512,
    ];

    /// AWS's name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::SymmetricDefault => "SYMMETRIC_DEFAULT",
            Self::Rsa2048 => "RSA_2048",
            Self::Rsa3072 => "RSA_3072",
            Self::Rsa4096 => "RSA_4096",
            Self::EccNistP256 => "ECC_NIST_P256",
            Self::EccNistP384 => "ECC_NIST_P384",
            Self::EccNistP521 => "ECC_NIST_P521",
            Self::EccSecgP256k1 => "ECC_SECG_P256K1",
            Self::Hmac224 => "HMAC_224",
            Self::Hmac256 => "HMAC_256",
            Self::Hmac384 => "HMAC_384",
            Self::Hmac512 => "HMAC_512",
        }
    }

    /// The spec AWS's name names.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the key is an RSA key pair.
    pub(crate) fn is_rsa(self) -> bool {
        matches!(self, Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096)
    }

    /// Whether the key is an elliptic-curve key pair.
    pub(crate) fn is_ecc(self) -> bool {
        matches!(
            self,
            Self::EccNistP256 | Self::EccNistP384 | Self::EccNistP521 | Self::EccSecgP256k1
        )
    }

    /// Whether the key is asymmetric (has a public key).
    pub(crate) fn is_asymmetric(self) -> bool {
        self.is_rsa() || self.is_ecc()
    }

    /// `EncryptionAlgorithms` of a key of this spec used for ENCRYPT_DECRYPT.
    pub(crate) fn encryption_algorithms(self) -> &'static [&'static str] {
        if self.is_rsa() {
            &["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
        } else if self == Self::SymmetricDefault {
            &["SYMMETRIC_DEFAULT"]
        } else {
            &[]
        }
    }

    /// `SigningAlgorithms` of a key of this spec used for SIGN_VERIFY.
    pub(crate) fn signing_algorithms(self) -> &'static [&'static str] {
        match self {
            Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096 => &[
                "RSASSA_PSS_SHA_256",
                "RSASSA_PSS_SHA_384",
                "RSASSA_PSS_SHA_512",
                "RSASSA_PKCS1_V1_5_SHA_256",
                "RSASSA_PKCS1_V1_5_SHA_384",
                "RSASSA_PKCS1_V1_5_SHA_512",
            ],
            Self::EccNistP256 | Self::EccSecgP256k1 => &["ECDSA_SHA_256"],
            Self::EccNistP384 => &["ECDSA_SHA_384"],
            Self::EccNistP521 => &["ECDSA_SHA_512"],
            _ => &[],
        }
    }

    /// `MacAlgorithms` of an HMAC key of this spec.
    pub(crate) fn mac_algorithms(self) -> &'static [&'static str] {
        match self {
            Self::Hmac224 => &["HMAC_SHA_224"],
            Self::Hmac256 => &["HMAC_SHA_256"],
            Self::Hmac384 => &["HMAC_SHA_384"],
            Self::Hmac512 => &["HMAC_SHA_512"],
            _ => &[],
        }
    }

    /// The usages AWS allows for this spec.
    pub(crate) fn usages(self) -> &'static [KeyUsage] {
        use KeyUsage::*;
        match self {
            Self::SymmetricDefault => &[EncryptDecrypt],
            Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096 => &[EncryptDecrypt, SignVerify],
            Self::EccNistP256 | Self::EccNistP384 | Self::EccNistP521 => {
                &[SignVerify, KeyAgreement]
            }
            Self::EccSecgP256k1 => &[SignVerify],
            Self::Hmac224 | Self::Hmac256 | Self::Hmac384 | Self::Hmac512 => &[GenerateVerifyMac],
        }
    }
}

/// A key's `KeyUsage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub(crate) enum KeyUsage {
    /// Encrypt and Decrypt (and data keys, for symmetric keys).
    #[default]
    #[serde(rename = "ENCRYPT_DECRYPT")]
    EncryptDecrypt,
    /// Sign and Verify.
    #[serde(rename = "SIGN_VERIFY")]
    SignVerify,
    /// GenerateMac and VerifyMac.
    #[serde(rename = "GENERATE_VERIFY_MAC")]
    GenerateVerifyMac,
    /// DeriveSharedSecret.
    #[serde(rename = "KEY_AGREEMENT")]
    KeyAgreement,
}

impl KeyUsage {
    /// Every usage this KMS supports.
    pub(crate) const ALL: [Self; 4] = [
        Self::EncryptDecrypt,
        Self::SignVerify,
        Self::GenerateVerifyMac,
        Self::KeyAgreement,
    ];

    /// AWS's name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::EncryptDecrypt => "ENCRYPT_DECRYPT",
            Self::SignVerify => "SIGN_VERIFY",
            Self::GenerateVerifyMac => "GENERATE_VERIFY_MAC",
            Self::KeyAgreement => "KEY_AGREEMENT",
        }
    }

    /// The usage AWS's name names.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Where a key's material comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub(crate) enum Origin {
    /// Generated by the KMS.
    #[default]
    #[serde(rename = "AWS_KMS")]
    AwsKms,
    /// Imported by the key owner (ImportKeyMaterial).
    #[serde(rename = "EXTERNAL")]
    External,
}

impl Origin {
    /// AWS's name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::AwsKms => "AWS_KMS",
            Self::External => "EXTERNAL",
        }
    }
}

/// A key's attributes beyond the columns of version 1 of the store, kept as one JSON column of
/// the key's row (covered by its MAC). Absent members take their defaults, so a key of version
/// 1 reads as a symmetric, KMS-generated, untagged, single-Region key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct KeyAttrs {
    /// The key spec.
    pub(crate) key_spec: KeySpec,
    /// The key usage.
    pub(crate) key_usage: KeyUsage,
    /// Where the material comes from.
    pub(crate) origin: Origin,
    /// Tags (`TagKey` → `TagValue`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) tags: BTreeMap<String, String>,
    /// The region the key lives in; `None` for the deployment's home region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) region: Option<String>,
    /// Multi-Region keys: which region holds the primary key and which hold replicas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) multi_region: Option<MultiRegion>,
    /// Imported material: when it expires (ms since epoch), if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) valid_to_ms: Option<i64>,
    /// Every material version's identity and how it came (creation, rotations, imports),
    /// oldest first; empty for keys from before this was kept.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) materials: Vec<MaterialInfo>,
    /// Imported material: its keyed fingerprint (hex HMAC-SHA256 under a key derived from the
    /// root key, see `ops::import`), so a re-import is checked to be the same material.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) import_fingerprint: Option<String>,
}

/// A Multi-Region key's configuration, as every replica of it records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct MultiRegion {
    /// The primary key's region.
    pub(crate) primary_region: String,
    /// The replicas' regions.
    pub(crate) replica_regions: Vec<String>,
}

/// One version of a key's material.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct MaterialInfo {
    /// The material version (1 at creation).
    pub(crate) version: u32,
    /// `KeyMaterialId`: 64 hex characters, unique per version.
    pub(crate) material_id: String,
    /// When it became current, ms since epoch.
    pub(crate) created_ms: i64,
    /// `AUTOMATIC`, `ON_DEMAND`, or empty for the first version.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) rotation_type: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_usages_follow_aws() {
        for spec in KeySpec::ALL {
            assert_eq!(KeySpec::parse(spec.as_str()), Some(spec));
            assert!(!spec.usages().is_empty());
        }
        for usage in KeyUsage::ALL {
            assert_eq!(KeyUsage::parse(usage.as_str()), Some(usage));
        }
        assert_eq!(KeySpec::parse("RSA_1024"), None);
        assert!(
            !KeySpec::EccSecgP256k1
                .usages()
                .contains(&KeyUsage::KeyAgreement)
        );
        assert!(
            KeySpec::Rsa2048
                .usages()
                .contains(&KeyUsage::EncryptDecrypt)
        );
    }

    #[test]
    fn a_version_one_key_reads_as_symmetric_and_unknown_members_are_refused() {
        let a: KeyAttrs = serde_json::from_str("{}").unwrap();
        assert_eq!(a, KeyAttrs::default());
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"KeySpec":"SYMMETRIC_DEFAULT","KeyUsage":"ENCRYPT_DECRYPT","Origin":"AWS_KMS"}"#
        );
        assert!(serde_json::from_str::<KeyAttrs>(r#"{"Future":1}"#).is_err());
    }
}
