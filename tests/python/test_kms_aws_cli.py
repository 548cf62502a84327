"""Every operation issue 10 added, through aws-cli unchanged (the other files drive each through
boto3 and check the answers in depth; here aws-cli's own request shapes, blob arguments and
output parsing meet cloister-kms)."""
import base64
import os

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

import pytest
from conftest import Kms

APP = "arn:aws:iam::111122223333:role/cli-app"


@pytest.fixture(scope="module")
def multi():
    s = Kms(extra=("--replica-region", "us-west-2"))
    yield s
    s.stop()


def b64d(s):
    return base64.b64decode(s)


def test_asymmetric_operations(server):
    run = server.aws
    rsa = run("create-key", "--key-spec", "RSA_2048", "--key-usage", "ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
    ct = run("encrypt", "--key-id", rsa, "--plaintext", server.file("p.bin", b"rsa secret"),
             "--encryption-algorithm", "RSAES_OAEP_SHA_256")["CiphertextBlob"]
    pt = run("decrypt", "--key-id", rsa, "--ciphertext-blob", server.file("c.bin", b64d(ct)),
             "--encryption-algorithm", "RSAES_OAEP_SHA_256")["Plaintext"]
    assert b64d(pt) == b"rsa secret"

    signer = run("create-key", "--key-spec", "ECC_NIST_P384", "--key-usage", "SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    msg = server.file("m.bin", b"signed by aws-cli")
    sig = run("sign", "--key-id", signer, "--message", msg, "--signing-algorithm", "ECDSA_SHA_384")["Signature"]
    ok = run("verify", "--key-id", signer, "--message", msg, "--signature", server.file("s.bin", b64d(sig)),
             "--signing-algorithm", "ECDSA_SHA_384")
    assert ok["SignatureValid"] is True

    sym = run("create-key")["KeyMetadata"]["KeyId"]
    pair = run("generate-data-key-pair", "--key-id", sym, "--key-pair-spec", "ECC_NIST_P256")
    private = serialization.load_der_private_key(b64d(pair["PrivateKeyPlaintext"]), None)
    assert private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == b64d(pair["PublicKey"])
    bare = run("generate-data-key-pair-without-plaintext", "--key-id", sym, "--key-pair-spec", "RSA_2048")
    assert "PrivateKeyPlaintext" not in bare and bare["PrivateKeyCiphertextBlob"]

    agree = run("create-key", "--key-spec", "ECC_NIST_P256", "--key-usage", "KEY_AGREEMENT")["KeyMetadata"]["KeyId"]
    peer = ec.generate_private_key(ec.SECP256R1())
    spki = peer.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    secret = run("derive-shared-secret", "--key-id", agree, "--key-agreement-algorithm", "ECDH",
                 "--public-key", server.file("peer.der", spki))["SharedSecret"]
    kms_public = serialization.load_der_public_key(b64d(run("get-public-key", "--key-id", agree)["PublicKey"]))
    assert b64d(secret) == peer.exchange(ec.ECDH(), kms_public)


def test_grants_tags_and_small_operations(server):
    run = server.aws
    key = run("create-key", "--tags", "TagKey=team,TagValue=a")["KeyMetadata"]["KeyId"]
    run("tag-resource", "--key-id", key, "--tags", "TagKey=env,TagValue=test")
    run("untag-resource", "--key-id", key, "--tag-keys", "team")
    assert run("list-resource-tags", "--key-id", key)["Tags"] == [{"TagKey": "env", "TagValue": "test"}]

    g = run("create-grant", "--key-id", key, "--grantee-principal", APP, "--retiring-principal",
            "arn:aws:iam::111122223333:root", "--operations", "Decrypt")
    retirable = run("list-retirable-grants", "--retiring-principal", "arn:aws:iam::111122223333:root")["Grants"]
    assert g["GrantId"] in {x["GrantId"] for x in retirable}
    run("retire-grant", "--grant-token", g["GrantToken"])
    assert run("list-grants", "--key-id", key)["Grants"] == []

    assert run("list-key-policies", "--key-id", key)["PolicyNames"] == ["default"]
    run("update-key-description", "--key-id", key, "--description", "renamed by aws-cli")
    assert run("describe-key", "--key-id", key)["KeyMetadata"]["Description"] == "renamed by aws-cli"
    run("rotate-key-on-demand", "--key-id", key)
    rotations = run("list-key-rotations", "--key-id", key)["Rotations"]
    assert [r["RotationType"] for r in rotations] == ["ON_DEMAND"]
    assert rotations[0]["KeyMaterialId"] == run("describe-key", "--key-id", key)["KeyMetadata"]["CurrentKeyMaterialId"]


def test_imported_key_material(server):
    run = server.aws
    key = run("create-key", "--origin", "EXTERNAL")["KeyMetadata"]["KeyId"]
    params = run("get-parameters-for-import", "--key-id", key, "--wrapping-algorithm", "RSAES_OAEP_SHA_256",
                 "--wrapping-key-spec", "RSA_3072")
    wrapping = serialization.load_der_public_key(b64d(params["PublicKey"]))
    material = os.urandom(32)
    wrapped = wrapping.encrypt(material, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                      algorithm=hashes.SHA256(), label=None))
    run("import-key-material", "--key-id", key,
        "--import-token", server.file("token.bin", b64d(params["ImportToken"])),
        "--encrypted-key-material", server.file("wrapped.bin", wrapped),
        "--expiration-model", "KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert run("describe-key", "--key-id", key)["KeyMetadata"]["KeyState"] == "Enabled"
    run("delete-imported-key-material", "--key-id", key)
    assert run("describe-key", "--key-id", key)["KeyMetadata"]["KeyState"] == "PendingImport"


def test_multi_region_keys(multi):
    east = multi.aws
    primary = east("create-key", "--multi-region")["KeyMetadata"]
    replica = east("replicate-key", "--key-id", primary["KeyId"], "--replica-region", "us-west-2")
    assert replica["ReplicaKeyMetadata"]["Arn"].startswith("arn:aws:kms:us-west-2:")
    ct = east("encrypt", "--key-id", primary["KeyId"], "--plaintext", multi.file("mr.bin", b"both regions"))
    pt = multi.aws("decrypt", "--ciphertext-blob", multi.file("mr.ct", b64d(ct["CiphertextBlob"])),
                   region="us-west-2")["Plaintext"]
    assert b64d(pt) == b"both regions"
    east("update-primary-region", "--key-id", primary["KeyId"], "--primary-region", "us-west-2")
    md = multi.aws("describe-key", "--key-id", primary["KeyId"], region="us-west-2")["KeyMetadata"]
    assert md["MultiRegionConfiguration"]["MultiRegionKeyType"] == "PRIMARY"
