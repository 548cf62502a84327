//! Key material for each [`KeySpec`] and what asymmetric material does, all through aws-lc-rs:
//! new material (32 random bytes for SYMMETRIC_DEFAULT, a random HMAC key of the spec's length,
//! or a key pair kept as its PKCS #8 private key, which holds the public key too), the public
//! key, RSAES-OAEP, the signing algorithms (of a message or of a precomputed digest), and ECDH.
//! The bytes are zeroized when dropped.

use aws_lc_rs::agreement;
use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{
    EncryptionAlgorithmId, KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepAlgorithm,
    OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey,
};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, RsaEncoding, UnparsedPublicKey};
use zeroize::Zeroizing;

use crate::error::{KmsError, Result};
use crate::keyspec::KeySpec;

/// Random bytes.
fn random(n: usize) -> Result<Zeroizing<Vec<u8>>> {
    let mut v = Zeroizing::new(vec![0u8; n]);
    SystemRandom::new()
        .fill(&mut v)
        .map_err(|_| KmsError::no_randomness())?;
    Ok(v)
}

fn failed(what: &str) -> KmsError {
    KmsError::Internal(format!("cannot generate {what} key material"))
}

/// The ECDSA signing algorithm (and so the curve) of an ECC spec.
pub(crate) fn ecdsa_signing(spec: KeySpec) -> Option<&'static signature::EcdsaSigningAlgorithm> {
    match spec {
        KeySpec::EccNistP256 => Some(&signature::ECDSA_P256_SHA256_ASN1_SIGNING),
        KeySpec::EccNistP384 => Some(&signature::ECDSA_P384_SHA384_ASN1_SIGNING),
        KeySpec::EccNistP521 => Some(&signature::ECDSA_P521_SHA512_ASN1_SIGNING),
        KeySpec::EccSecgP256k1 => Some(&signature::ECDSA_P256K1_SHA256_ASN1_SIGNING),
        _ => None,
    }
}

/// The length of an HMAC spec's key material (AWS generates keys of the digest's length).
pub(crate) fn hmac_key_len(spec: KeySpec) -> Option<usize> {
    match spec {
        KeySpec::Hmac224 => Some(28),
        KeySpec::Hmac256 => Some(32),
        KeySpec::Hmac384 => Some(48),
        KeySpec::Hmac512 => Some(64),
        _ => None,
    }
}

/// Fresh material for a key of `spec`.
pub(crate) fn generate(spec: KeySpec) -> Result<Zeroizing<Vec<u8>>> {
    if spec == KeySpec::SymmetricDefault {
        return random(32);
    }
    if let Some(n) = hmac_key_len(spec) {
        return random(n);
    }
    if let Some(alg) = ecdsa_signing(spec) {
        let pair = EcdsaKeyPair::generate(alg).map_err(|_| failed(spec.as_str()))?;
        let der = pair.to_pkcs8v1().map_err(|_| failed(spec.as_str()))?;
        return Ok(Zeroizing::new(der.as_ref().to_vec()));
    }
    let size = match spec {
        KeySpec::Rsa2048 => KeySize::Rsa2048,
        KeySpec::Rsa3072 => KeySize::Rsa3072,
        KeySpec::Rsa4096 => KeySize::Rsa4096,
        _ => return Err(failed(spec.as_str())),
    };
    let pair = aws_lc_rs::rsa::KeyPair::generate(size).map_err(|_| failed(spec.as_str()))?;
    let der = pair.as_der().map_err(|_| failed(spec.as_str()))?;
    Ok(Zeroizing::new(der.as_ref().to_vec()))
}

/// [`generate`], off the async workers for RSA keys (an RSA 4096 key pair takes a noticeable
/// time to find, during which a worker would serve no one else).
pub(crate) async fn generate_async(spec: KeySpec) -> Result<Zeroizing<Vec<u8>>> {
    if !spec.is_rsa() {
        return generate(spec);
    }
    tokio::task::spawn_blocking(move || generate(spec))
        .await
        .map_err(|_| failed(spec.as_str()))?
}

/// The public key (SubjectPublicKeyInfo, DER) of an asymmetric key's material.
pub(crate) fn public_key_der(spec: KeySpec, material: &[u8]) -> Result<Vec<u8>> {
    let bad = || {
        KmsError::Internal(format!(
            "stored {} key material does not parse",
            spec.as_str()
        ))
    };
    if let Some(alg) = ecdsa_signing(spec) {
        let pair = EcdsaKeyPair::from_pkcs8(alg, material).map_err(|_| bad())?;
        let der = pair.public_key().as_der().map_err(|_| bad())?;
        return Ok(der.as_ref().to_vec());
    }
    if spec.is_rsa() {
        let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(material).map_err(|_| bad())?;
        let der = pair.public_key().as_der().map_err(|_| bad())?;
        return Ok(der.as_ref().to_vec());
    }
    Err(KmsError::Unsupported(format!(
        "{} keys have no public key",
        spec.as_str()
    )))
}

fn unparsable(spec: KeySpec) -> KmsError {
    KmsError::Internal(format!(
        "stored {} key material does not parse",
        spec.as_str()
    ))
}

/// The OAEP algorithm AWS's `EncryptionAlgorithm` name names (RSA keys only).
pub(crate) fn oaep(name: &str) -> Option<&'static OaepAlgorithm> {
    match name {
        "RSAES_OAEP_SHA_1" => Some(&OAEP_SHA1_MGF1SHA1),
        "RSAES_OAEP_SHA_256" => Some(&OAEP_SHA256_MGF1SHA256),
        _ => None,
    }
}

/// The longest plaintext RSAES-OAEP takes under an RSA key of `spec` (RFC 8017: modulus length
/// − 2·hash length − 2; AWS's table: RSA_2048 214 / 190 bytes for SHA-1 / SHA-256).
pub(crate) fn oaep_max_plaintext(spec: KeySpec, alg: &'static OaepAlgorithm) -> usize {
    let modulus = match spec {
        KeySpec::Rsa2048 => 256,
        KeySpec::Rsa3072 => 384,
        KeySpec::Rsa4096 => 512,
        _ => return 0,
    };
    let hash = match alg.id() {
        EncryptionAlgorithmId::OaepSha1Mgf1sha1 => 20,
        EncryptionAlgorithmId::OaepSha256Mgf1sha256 => 32,
        EncryptionAlgorithmId::OaepSha384Mgf1sha384 => 48,
        _ => 64,
    };
    modulus - 2 * hash - 2
}

/// RSAES-OAEP encryption under an RSA key pair's public key.
pub(crate) fn oaep_encrypt(
    spec: KeySpec,
    material: &[u8],
    alg: &'static OaepAlgorithm,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let spki = public_key_der(spec, material)?;
    let key = PublicEncryptingKey::from_der(&spki)
        .ok()
        .and_then(|k| OaepPublicEncryptingKey::new(k).ok())
        .ok_or_else(|| unparsable(spec))?;
    let mut out = vec![0u8; key.ciphertext_size()];
    let n = key
        .encrypt(alg, plaintext, &mut out, None)
        .map_err(|_| KmsError::Internal("RSAES-OAEP encryption failed".into()))?
        .len();
    out.truncate(n);
    Ok(out)
}

/// RSAES-OAEP decryption; `None` when the ciphertext does not open (wrong key, algorithm or
/// bytes: the caller answers InvalidCiphertextException).
pub(crate) fn oaep_decrypt(
    spec: KeySpec,
    material: &[u8],
    alg: &'static OaepAlgorithm,
    ciphertext: &[u8],
) -> Result<Option<Zeroizing<Vec<u8>>>> {
    let key = PrivateDecryptingKey::from_pkcs8(material)
        .ok()
        .and_then(|k| OaepPrivateDecryptingKey::new(k).ok())
        .ok_or_else(|| unparsable(spec))?;
    let mut out = Zeroizing::new(vec![0u8; key.min_output_size()]);
    let n = match key.decrypt(alg, ciphertext, &mut out, None) {
        Ok(p) => p.len(),
        Err(_) => return Ok(None),
    };
    out.truncate(n);
    Ok(Some(out))
}

/// How a signing algorithm pads (RSA) or whether it is ECDSA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Pss,
    Pkcs1,
    Ecdsa,
}

/// One of AWS's signing algorithms for RSA and ECC keys.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SigningAlgorithm {
    /// AWS's name.
    pub(crate) name: &'static str,
    scheme: Scheme,
    /// The digest the algorithm signs (and DIGEST messages must be of).
    pub(crate) digest: &'static digest::Algorithm,
}

/// Every signing algorithm of RSA and ECC keys. Which key specs take which is
/// [`KeySpec::signing_algorithms`]'s business; the ECDSA curve is the key's.
pub(crate) const SIGNING_ALGORITHMS: [SigningAlgorithm; 9] = {
    const fn a(
        name: &'static str,
        scheme: Scheme,
        digest: &'static digest::Algorithm,
    ) -> SigningAlgorithm {
        SigningAlgorithm {
            name,
            scheme,
            digest,
        }
    }
    [
        a("RSASSA_PSS_SHA_256", Scheme::Pss, &digest::SHA256),
        a("RSASSA_PSS_SHA_384", Scheme::Pss, &digest::SHA384),
        a("RSASSA_PSS_SHA_512", Scheme::Pss, &digest::SHA512),
        a("RSASSA_PKCS1_V1_5_SHA_256", Scheme::Pkcs1, &digest::SHA256),
        a("RSASSA_PKCS1_V1_5_SHA_384", Scheme::Pkcs1, &digest::SHA384),
        a("RSASSA_PKCS1_V1_5_SHA_512", Scheme::Pkcs1, &digest::SHA512),
        a("ECDSA_SHA_256", Scheme::Ecdsa, &digest::SHA256),
        a("ECDSA_SHA_384", Scheme::Ecdsa, &digest::SHA384),
        a("ECDSA_SHA_512", Scheme::Ecdsa, &digest::SHA512),
    ]
};

impl SigningAlgorithm {
    /// The algorithm AWS's name names.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        SIGNING_ALGORITHMS.into_iter().find(|a| a.name == name)
    }

    /// The RSA padding for signing (`None` for ECDSA).
    fn rsa_encoding(self) -> Option<&'static dyn RsaEncoding> {
        let d = self.digest.output_len();
        Some(match (self.scheme, d) {
            (Scheme::Pss, 32) => &signature::RSA_PSS_SHA256,
            (Scheme::Pss, 48) => &signature::RSA_PSS_SHA384,
            (Scheme::Pss, _) => &signature::RSA_PSS_SHA512,
            (Scheme::Pkcs1, 32) => &signature::RSA_PKCS1_SHA256,
            (Scheme::Pkcs1, 48) => &signature::RSA_PKCS1_SHA384,
            (Scheme::Pkcs1, _) => &signature::RSA_PKCS1_SHA512,
            (Scheme::Ecdsa, _) => return None,
        })
    }

    /// The verification algorithm for a key of `spec`.
    fn verification(self, spec: KeySpec) -> Option<&'static dyn signature::VerificationAlgorithm> {
        let d = self.digest.output_len();
        Some(match (self.scheme, d, spec) {
            (Scheme::Pss, 32, _) => &signature::RSA_PSS_2048_8192_SHA256,
            (Scheme::Pss, 48, _) => &signature::RSA_PSS_2048_8192_SHA384,
            (Scheme::Pss, _, _) => &signature::RSA_PSS_2048_8192_SHA512,
            (Scheme::Pkcs1, 32, _) => &signature::RSA_PKCS1_2048_8192_SHA256,
            (Scheme::Pkcs1, 48, _) => &signature::RSA_PKCS1_2048_8192_SHA384,
            (Scheme::Pkcs1, _, _) => &signature::RSA_PKCS1_2048_8192_SHA512,
            (Scheme::Ecdsa, 32, KeySpec::EccNistP256) => &signature::ECDSA_P256_SHA256_ASN1,
            (Scheme::Ecdsa, 32, KeySpec::EccSecgP256k1) => &signature::ECDSA_P256K1_SHA256_ASN1,
            (Scheme::Ecdsa, 48, KeySpec::EccNistP384) => &signature::ECDSA_P384_SHA384_ASN1,
            (Scheme::Ecdsa, 64, KeySpec::EccNistP521) => &signature::ECDSA_P521_SHA512_ASN1,
            (Scheme::Ecdsa, _, _) => return None,
        })
    }
}

/// What is signed: the message itself, or its digest computed by the caller.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Message<'a> {
    /// The message (MessageType RAW): hashed here.
    Raw(&'a [u8]),
    /// The message's digest (MessageType DIGEST): its length is the algorithm's digest length.
    Digest(&'a [u8]),
}

impl Message<'_> {
    fn digest(self, alg: SigningAlgorithm) -> Result<Digest> {
        match self {
            Self::Raw(m) => Ok(digest::digest(alg.digest, m)),
            Self::Digest(d) => Digest::import_less_safe(d, alg.digest).map_err(|_| {
                KmsError::validation(format!(
                    "Digest is invalid length for algorithm {}.",
                    alg.name
                ))
            }),
        }
    }
}

/// Signs with a key pair of `spec` (RSA PSS salt length = digest length, as AWS; ECDSA
/// signatures DER-encoded, as AWS returns them). `alg` must be one of the spec's.
pub(crate) fn sign(
    spec: KeySpec,
    material: &[u8],
    alg: SigningAlgorithm,
    message: Message<'_>,
) -> Result<Vec<u8>> {
    let digest = message.digest(alg)?;
    let failed = || KmsError::Internal(format!("{} signing failed", alg.name));
    if let Some(encoding) = alg.rsa_encoding() {
        let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(material).map_err(|_| unparsable(spec))?;
        let mut sig = vec![0u8; pair.public_modulus_len()];
        pair.sign_digest(encoding, &digest, &mut sig)
            .map_err(|_| failed())?;
        return Ok(sig);
    }
    // sign_digest refuses a digest of another algorithm than the curve's.
    let signing = ecdsa_signing(spec).ok_or_else(failed)?;
    let pair = EcdsaKeyPair::from_pkcs8(signing, material).map_err(|_| unparsable(spec))?;
    let sig = pair.sign_digest(&digest).map_err(|_| failed())?;
    Ok(sig.as_ref().to_vec())
}

/// Whether `signature` is `alg`'s signature of `message` by the key pair of `spec`.
pub(crate) fn verify(
    spec: KeySpec,
    material: &[u8],
    alg: SigningAlgorithm,
    message: Message<'_>,
    signature: &[u8],
) -> Result<bool> {
    let digest = message.digest(alg)?;
    let verification = alg.verification(spec).ok_or_else(|| {
        KmsError::Internal(format!("{} is not valid for {}", alg.name, spec.as_str()))
    })?;
    let spki = public_key_der(spec, material)?;
    Ok(UnparsedPublicKey::new(verification, &spki)
        .verify_digest(&digest, signature)
        .is_ok())
}

/// The ECDH algorithm (curve) of a NIST ECC spec.
fn ecdh(spec: KeySpec) -> Option<&'static agreement::Algorithm> {
    match spec {
        KeySpec::EccNistP256 => Some(&agreement::ECDH_P256),
        KeySpec::EccNistP384 => Some(&agreement::ECDH_P384),
        KeySpec::EccNistP521 => Some(&agreement::ECDH_P521),
        _ => None,
    }
}

/// Why a peer's public key was refused by [`derive_shared_secret`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerKeyError {
    /// Not a SubjectPublicKeyInfo of an EC point on the key's curve.
    Invalid,
}

/// ECDH (cofactor Diffie-Hellman, the raw x coordinate) of the key pair of `spec` with the
/// peer's public key, given as SubjectPublicKeyInfo DER on the same curve.
pub(crate) fn derive_shared_secret(
    spec: KeySpec,
    material: &[u8],
    peer_spki: &[u8],
) -> Result<std::result::Result<Zeroizing<Vec<u8>>, PeerKeyError>> {
    let alg = ecdh(spec)
        .ok_or_else(|| KmsError::Internal(format!("{} keys do not agree keys", spec.as_str())))?;
    let private =
        agreement::PrivateKey::from_private_key_der(alg, material).map_err(|_| unparsable(spec))?;
    let Ok(peer) =
        agreement::ParsedPublicKey::try_from(agreement::UnparsedPublicKey::new(alg, peer_spki))
    else {
        return Ok(Err(PeerKeyError::Invalid));
    };
    if peer.format() != agreement::ParsedPublicKeyFormat::X509 {
        return Ok(Err(PeerKeyError::Invalid));
    }
    Ok(agreement::agree(
        &private,
        peer,
        PeerKeyError::Invalid,
        |secret| Ok(Zeroizing::new(secret.to_vec())),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_generates_material_whose_public_key_parses() {
        for spec in KeySpec::ALL {
            if spec == KeySpec::Rsa4096 {
                continue; // slow in debug builds; 2048 and 3072 take the same path
            }
            let m = generate(spec).unwrap();
            if spec.is_asymmetric() {
                let spki = public_key_der(spec, &m).unwrap();
                assert_eq!(spki[0], 0x30, "{spec:?}");
            } else {
                assert!(public_key_der(spec, &m).is_err());
                let want = hmac_key_len(spec).unwrap_or(32);
                assert_eq!(m.len(), want, "{spec:?}");
            }
        }
        assert_ne!(
            *generate(KeySpec::Hmac256).unwrap(),
            *generate(KeySpec::Hmac256).unwrap()
        );
    }

    // AWS Developer Guide, asymmetric key specs (RSA key specs for encryption and decryption):
    // the longest plaintext for each key size and OAEP hash.
    #[test]
    fn oaep_plaintext_limits_are_aws_s_table() {
        for (spec, sha1, sha256) in [
            (KeySpec::Rsa2048, 214, 190),
            (KeySpec::Rsa3072, 342, 318),
            (KeySpec::Rsa4096, 470, 446),
        ] {
            assert_eq!(oaep_max_plaintext(spec, &OAEP_SHA1_MGF1SHA1), sha1);
            assert_eq!(oaep_max_plaintext(spec, &OAEP_SHA256_MGF1SHA256), sha256);
        }
        // And aws-lc-rs agrees for a real key.
        let m = generate(KeySpec::Rsa2048).unwrap();
        let key = OaepPublicEncryptingKey::new(
            PublicEncryptingKey::from_der(&public_key_der(KeySpec::Rsa2048, &m).unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(key.max_plaintext_size(&OAEP_SHA1_MGF1SHA1), 214);
        assert_eq!(key.max_plaintext_size(&OAEP_SHA256_MGF1SHA256), 190);
        assert!(oaep_encrypt(KeySpec::Rsa2048, &m, &OAEP_SHA256_MGF1SHA256, &[1; 191]).is_err());
    }
}
