"""Asymmetric keys through boto3, unchanged, cross-checked by Python `cryptography`: GetPublicKey,
RSA Encrypt / Decrypt, Sign / Verify, GenerateDataKeyPair, DeriveSharedSecret; one aws-cli call."""
import base64
import os

import pytest
from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa


def err(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def new_pair(kms, spec, usage):
    return kms.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]["KeyId"]


HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def hash_of(alg):
    return HASHES[alg[-3:]]()


def check_signature(public, alg, message, signature):
    """Raises InvalidSignature unless `signature` is `alg`'s signature of `message`."""
    h = hash_of(alg)
    if alg.startswith("RSASSA_PSS"):
        # AWS: PSS with MGF1 of the same hash and a salt as long as the digest.
        public.verify(signature, message, padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size), h)
    elif alg.startswith("RSASSA_PKCS1"):
        public.verify(signature, message, padding.PKCS1v15(), h)
    else:
        public.verify(signature, message, ec.ECDSA(h))


def digest(alg, message):
    d = hashes.Hash(hash_of(alg))
    d.update(message)
    return d.finalize()


@pytest.mark.parametrize("spec", ["RSA_2048", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521", "ECC_SECG_P256K1"])
def test_sign_raw_and_digest_verified_by_cryptography(kms, spec):
    """AWS API reference, Sign / Verify: every signing algorithm of the spec, MessageType RAW and DIGEST."""
    key_id = new_pair(kms, spec, "SIGN_VERIFY")
    pk = kms.get_public_key(KeyId=key_id)
    assert pk["KeySpec"] == spec and pk["KeyUsage"] == "SIGN_VERIFY" and "EncryptionAlgorithms" not in pk
    public = serialization.load_der_public_key(pk["PublicKey"])
    message = b"signed by cloister-kms"
    for alg in pk["SigningAlgorithms"]:
        for kind, m in (("RAW", message), ("DIGEST", digest(alg, message))):
            out = kms.sign(KeyId=key_id, Message=m, MessageType=kind, SigningAlgorithm=alg)
            assert out["SigningAlgorithm"] == alg and out["KeyId"].endswith(key_id)
            check_signature(public, alg, message, out["Signature"])
            with pytest.raises(InvalidSignature):
                check_signature(public, alg, b"another message", out["Signature"])
            v = kms.verify(KeyId=key_id, Message=m, MessageType=kind, Signature=out["Signature"], SigningAlgorithm=alg)
            assert v["SignatureValid"] is True
            with pytest.raises(ClientError) as e:
                kms.verify(KeyId=key_id, Message=b"another message", Signature=out["Signature"], SigningAlgorithm=alg)
            assert err(e) == ("KMSInvalidSignatureException", 400)
        # DIGEST: the message's length must be the algorithm's digest length.
        with pytest.raises(ClientError) as e:
            kms.sign(KeyId=key_id, Message=b"\0" * 20, MessageType="DIGEST", SigningAlgorithm=alg)
        assert err(e)[0] == "ValidationException"


def test_signatures_made_outside_verify_and_wrong_algorithms_are_refused(kms):
    """A valid signature by another key of the same spec is KMSInvalidSignatureException, and an
    algorithm of another spec InvalidKeyUsageException (AWS API reference, Sign / Verify)."""
    key_id = new_pair(kms, "ECC_NIST_P256", "SIGN_VERIFY")
    other = ec.generate_private_key(ec.SECP256R1()).sign(b"m", ec.ECDSA(hashes.SHA256()))
    with pytest.raises(ClientError) as e:
        kms.verify(KeyId=key_id, Message=b"m", Signature=other, SigningAlgorithm="ECDSA_SHA_256")
    assert err(e) == ("KMSInvalidSignatureException", 400)
    for alg in ("ECDSA_SHA_384", "RSASSA_PSS_SHA_256"):
        with pytest.raises(ClientError) as e:
            kms.sign(KeyId=key_id, Message=b"m", SigningAlgorithm=alg)
        assert err(e)[0] == "InvalidKeyUsageException"
    with pytest.raises(ClientError) as e:
        kms.sign(KeyId=key_id, Message=b"m" * 4097, SigningAlgorithm="ECDSA_SHA_256")
    assert err(e)[0] == "ValidationException"


def test_rsa_encryption_both_ways(kms):
    """AWS API reference, Encrypt / Decrypt: RSAES_OAEP_SHA_1 and _256, KeyId and algorithm required to decrypt."""
    key_id = new_pair(kms, "RSA_2048", "ENCRYPT_DECRYPT")
    pk = kms.get_public_key(KeyId=key_id)
    assert pk["EncryptionAlgorithms"] == ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
    public = serialization.load_der_public_key(pk["PublicKey"])
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048
    for alg, h in (("RSAES_OAEP_SHA_1", hashes.SHA1), ("RSAES_OAEP_SHA_256", hashes.SHA256)):
        outside = public.encrypt(b"from cryptography", padding.OAEP(mgf=padding.MGF1(h()), algorithm=h(), label=None))
        out = kms.decrypt(KeyId=key_id, CiphertextBlob=outside, EncryptionAlgorithm=alg)
        assert out["Plaintext"] == b"from cryptography" and out["EncryptionAlgorithm"] == alg
        ct = kms.encrypt(KeyId=key_id, Plaintext=b"from kms", EncryptionAlgorithm=alg)["CiphertextBlob"]
        assert len(ct) == public.key_size // 8
        assert kms.decrypt(KeyId=key_id, CiphertextBlob=ct, EncryptionAlgorithm=alg)["Plaintext"] == b"from kms"
    # AWS's plaintext limits for RSA_2048: 214 bytes with SHA-1, 190 with SHA-256.
    for alg, limit in (("RSAES_OAEP_SHA_1", 214), ("RSAES_OAEP_SHA_256", 190)):
        kms.encrypt(KeyId=key_id, Plaintext=b"x" * limit, EncryptionAlgorithm=alg)
        with pytest.raises(ClientError) as e:
            kms.encrypt(KeyId=key_id, Plaintext=b"x" * (limit + 1), EncryptionAlgorithm=alg)
        assert err(e)[0] == "ValidationException"
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=ct, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    assert err(e) == ("InvalidCiphertextException", 400)
    with pytest.raises(ClientError) as e:
        kms.decrypt(KeyId=key_id, CiphertextBlob=ct)
    assert err(e)[0] == "InvalidKeyUsageException"
    with pytest.raises(ClientError) as e:
        kms.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_1", EncryptionContext={"a": "b"})
    assert err(e)[0] == "ValidationException"
    with pytest.raises(ClientError) as e:
        kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")
    assert err(e)[0] == "InvalidKeyUsageException"


@pytest.mark.parametrize("spec,curve", [("ECC_NIST_P256", ec.SECP256R1()), ("RSA_2048", None)])
def test_data_key_pairs(kms, spec, curve):
    """AWS API reference, GenerateDataKeyPair: PKCS #8 private key, SPKI public key, private key
    sealed under the symmetric key with the encryption context."""
    sym = kms.create_key()["KeyMetadata"]["KeyId"]
    out = kms.generate_data_key_pair(KeyId=sym, KeyPairSpec=spec, EncryptionContext={"use": "pair"})
    assert out["KeyPairSpec"] == spec
    private = serialization.load_der_private_key(out["PrivateKeyPlaintext"], password=None)
    public_der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert public_der == out["PublicKey"]
    if curve is not None:
        assert private.curve.name == curve.name
    opened = kms.decrypt(CiphertextBlob=out["PrivateKeyCiphertextBlob"], EncryptionContext={"use": "pair"})
    assert opened["Plaintext"] == out["PrivateKeyPlaintext"]
    without = kms.generate_data_key_pair_without_plaintext(KeyId=sym, KeyPairSpec=spec)
    assert "PrivateKeyPlaintext" not in without
    serialization.load_der_public_key(without["PublicKey"])
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=out["PrivateKeyCiphertextBlob"])
    assert err(e)[0] == "InvalidCiphertextException"


@pytest.mark.parametrize("spec,curve", [("ECC_NIST_P256", ec.SECP256R1()), ("ECC_NIST_P384", ec.SECP384R1()),
                                        ("ECC_NIST_P521", ec.SECP521R1())])
def test_derive_shared_secret_matches_cryptography(kms, spec, curve):
    """AWS API reference, DeriveSharedSecret: ECDH of the KMS key pair and the peer's SPKI public key."""
    key_id = new_pair(kms, spec, "KEY_AGREEMENT")
    pk = kms.get_public_key(KeyId=key_id)
    assert pk["KeyAgreementAlgorithms"] == ["ECDH"]
    ours = serialization.load_der_public_key(pk["PublicKey"])
    peer = ec.generate_private_key(curve)
    peer_der = peer.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    out = kms.derive_shared_secret(KeyId=key_id, KeyAgreementAlgorithm="ECDH", PublicKey=peer_der)
    assert out["SharedSecret"] == peer.exchange(ec.ECDH(), ours)
    wrong_curve = ec.generate_private_key(ec.SECP256K1() if spec != "ECC_NIST_P384" else ec.SECP256R1()).public_key()
    with pytest.raises(ClientError) as e:
        kms.derive_shared_secret(KeyId=key_id, KeyAgreementAlgorithm="ECDH", PublicKey=wrong_curve.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert err(e)[0] == "ValidationException"


def test_aws_cli_signs_and_gets_public_keys(server):
    """`aws kms get-public-key` and `aws kms sign` unchanged against cloister-kms."""
    run = server.aws

    key_id = run("create-key", "--key-spec", "ECC_NIST_P256", "--key-usage", "SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    pk = run("get-public-key", "--key-id", key_id)
    public = serialization.load_der_public_key(base64.b64decode(pk["PublicKey"]))
    message_file = os.path.join(server.dir, "message.bin")
    with open(message_file, "wb") as f:
        f.write(b"signed through aws-cli")
    sig = run("sign", "--key-id", key_id, "--message", "fileb://" + message_file, "--message-type", "RAW",
              "--signing-algorithm", "ECDSA_SHA_256")["Signature"]
    public.verify(base64.b64decode(sig), b"signed through aws-cli", ec.ECDSA(hashes.SHA256()))
