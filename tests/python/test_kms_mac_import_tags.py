"""HMAC keys, imported key material and tags through boto3 (and aws-cli) against a real cloister-kms.

Cross-checks use independent code: Python's `hmac` computes what an imported HMAC key must return,
and `cryptography` wraps the material exactly as AWS's developer guide tells users to
("Importing key material": RSAES_OAEP_SHA_* of the material, or RSA_AES_KEY_WRAP_SHA_*: RSA-OAEP
of a fresh AES-256 key followed by the RFC 5649 AES key wrap with padding of the material).
"""
import base64
import datetime
import hashlib
import hmac
import json
import os

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def wrap(params, algorithm, material):
    """Wraps `material` for ImportKeyMaterial with the public key of GetParametersForImport."""
    public = serialization.load_der_public_key(params["PublicKey"])
    digest = hashes.SHA1() if algorithm.endswith("SHA_1") else hashes.SHA256()
    oaep = padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=None)
    if algorithm.startswith("RSAES_OAEP"):
        return public.encrypt(material, oaep)
    aes = os.urandom(32)
    return public.encrypt(aes, oaep) + aes_key_wrap_with_padding(aes, material)


def import_material(kms, key_id, material, algorithm="RSAES_OAEP_SHA_256", spec="RSA_2048", **extra):
    params = kms.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm=algorithm, WrappingKeySpec=spec)
    extra.setdefault("ExpirationModel", "KEY_MATERIAL_DOES_NOT_EXPIRE")
    return kms.import_key_material(KeyId=key_id, ImportToken=params["ImportToken"],
                                   EncryptedKeyMaterial=wrap(params, algorithm, material), **extra)


def external_key(kms, **kw):
    md = kms.create_key(Origin="EXTERNAL", **kw)["KeyMetadata"]
    assert md["KeyState"] == "PendingImport"
    return md["KeyId"]


# AWS API reference, GenerateMac / VerifyMac.
def test_generate_mac_is_deterministic_and_verify_mac_refuses_a_flipped_bit(kms):
    key_id = kms.create_key(KeySpec="HMAC_384", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
    md = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert md["MacAlgorithms"] == ["HMAC_SHA_384"]
    msg = b"token payload"
    mac = kms.generate_mac(KeyId=key_id, Message=msg, MacAlgorithm="HMAC_SHA_384", GrantTokens=[])
    assert len(mac["Mac"]) == 48
    assert mac["MacAlgorithm"] == "HMAC_SHA_384"
    assert kms.generate_mac(KeyId=key_id, Message=msg, MacAlgorithm="HMAC_SHA_384")["Mac"] == mac["Mac"]
    ok = kms.verify_mac(KeyId=key_id, Message=msg, MacAlgorithm="HMAC_SHA_384", Mac=mac["Mac"])
    assert ok["MacValid"] is True
    flipped = bytes([mac["Mac"][0] ^ 0x01]) + mac["Mac"][1:]
    with pytest.raises(kms.exceptions.KMSInvalidMacException):
        kms.verify_mac(KeyId=key_id, Message=msg, MacAlgorithm="HMAC_SHA_384", Mac=flipped)
    with pytest.raises(ClientError) as e:
        kms.generate_mac(KeyId=key_id, Message=msg, MacAlgorithm="HMAC_SHA_256")
    assert error_code(e) == "InvalidKeyUsageException"
    symmetric = kms.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(kms.exceptions.InvalidKeyUsageException):
        kms.generate_mac(KeyId=symmetric, Message=msg, MacAlgorithm="HMAC_SHA_256")


# AWS API reference, ImportKeyMaterial; developer guide, "Importing key material" (HMAC keys).
def test_an_imported_hmac_key_computes_pythons_hmac(kms):
    key_id = external_key(kms, KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")
    material = os.urandom(32)
    out = import_material(kms, key_id, material, algorithm="RSA_AES_KEY_WRAP_SHA_256")
    assert len(out["KeyMaterialId"]) == 64
    msg = b"independently computed"
    mac = kms.generate_mac(KeyId=key_id, Message=msg, MacAlgorithm="HMAC_SHA_256")["Mac"]
    assert mac == hmac.new(material, msg, hashlib.sha256).digest()
    assert kms.verify_mac(KeyId=key_id, Message=msg, MacAlgorithm="HMAC_SHA_256",
                          Mac=hmac.new(material, msg, hashlib.sha256).digest())["MacValid"]


# AWS API reference, ImportKeyMaterial / DeleteImportedKeyMaterial: only the same material can be
# imported again (IncorrectKeyMaterialException), and then the key's old ciphertexts decrypt.
def test_imported_symmetric_material_deletes_and_reimports_only_the_same(kms):
    key_id = external_key(kms, Description="byok")
    material = os.urandom(32)
    import_material(kms, key_id, material, algorithm="RSAES_OAEP_SHA_1", spec="RSA_3072")
    md = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert md["KeyState"] == "Enabled" and md["Origin"] == "EXTERNAL"
    assert md["ExpirationModel"] == "KEY_MATERIAL_DOES_NOT_EXPIRE"
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"bring your own key")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"bring your own key"

    kms.delete_imported_key_material(KeyId=key_id)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingImport"
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.decrypt(CiphertextBlob=blob)
    with pytest.raises(kms.exceptions.IncorrectKeyMaterialException):
        import_material(kms, key_id, os.urandom(32))
    import_material(kms, key_id, material, algorithm="RSA_AES_KEY_WRAP_SHA_1")
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"bring your own key"


# AWS API reference, ImportKeyMaterial: the token is bound to its key; the material must fit.
def test_import_tokens_and_material_are_checked(kms):
    a = external_key(kms)
    b = external_key(kms)
    params = kms.get_parameters_for_import(KeyId=a, WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                           WrappingKeySpec="RSA_2048")
    assert params["KeyId"].endswith(a)
    # ParametersValidTo: 24 hours from now (API reference, GetParametersForImport).
    left = params["ParametersValidTo"] - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(hours=23, minutes=55) < left <= datetime.timedelta(hours=24)
    wrapped = wrap(params, "RSAES_OAEP_SHA_256", os.urandom(32))
    with pytest.raises(kms.exceptions.InvalidImportTokenException):
        kms.import_key_material(KeyId=b, ImportToken=params["ImportToken"], EncryptedKeyMaterial=wrapped,
                                ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    with pytest.raises(kms.exceptions.IncorrectKeyMaterialException):
        import_material(kms, a, os.urandom(16))
    with pytest.raises(ClientError) as e:
        kms.get_parameters_for_import(KeyId=a, WrappingAlgorithm="RSAES_PKCS1_V1_5", WrappingKeySpec="RSA_2048")
    assert error_code(e) == "UnsupportedOperationException"
    own = kms.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(kms.exceptions.UnsupportedOperationException):
        kms.get_parameters_for_import(KeyId=own, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")
    # ValidTo: required by KEY_MATERIAL_EXPIRES, then shown by DescribeKey.
    with pytest.raises(ClientError) as e:
        import_material(kms, a, os.urandom(32), ExpirationModel="KEY_MATERIAL_EXPIRES")
    assert error_code(e) == "ValidationException"
    valid_to = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)
    import_material(kms, a, os.urandom(32), ExpirationModel="KEY_MATERIAL_EXPIRES", ValidTo=valid_to)
    md = kms.describe_key(KeyId=a)["KeyMetadata"]
    assert md["ExpirationModel"] == "KEY_MATERIAL_EXPIRES"
    assert abs(md["ValidTo"].timestamp() - valid_to.timestamp()) < 1


# Developer guide, "Importing key material" (asymmetric keys): a PKCS #8 private key.
def test_an_ecc_private_key_from_cryptography_imports(kms):
    key_id = external_key(kms, KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    other = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(kms.exceptions.IncorrectKeyMaterialException):
        import_material(kms, key_id, other, algorithm="RSA_AES_KEY_WRAP_SHA_256")
    der = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    import_material(kms, key_id, der, algorithm="RSA_AES_KEY_WRAP_SHA_256")
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"


# AWS API reference, TagResource / UntagResource / ListResourceTags.
def test_tags_are_added_listed_in_pages_and_removed(kms):
    key_id = kms.create_key(Tags=[{"TagKey": "env", "TagValue": "dev"}])["KeyMetadata"]["KeyId"]
    kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": f"k{i}", "TagValue": str(i)} for i in range(5)]
                     + [{"TagKey": "env", "TagValue": "prod"}])
    pages = kms.get_paginator("list_resource_tags").paginate(KeyId=key_id, PaginationConfig={"PageSize": 2})
    tags = {t["TagKey"]: t["TagValue"] for page in pages for t in page["Tags"]}
    assert tags == {"env": "prod", **{f"k{i}": str(i) for i in range(5)}}
    first = kms.list_resource_tags(KeyId=key_id, Limit=2)
    assert first["Truncated"] is True and len(first["Tags"]) == 2
    kms.untag_resource(KeyId=key_id, TagKeys=["k0", "k1", "not-there"])
    assert len(kms.list_resource_tags(KeyId=key_id)["Tags"]) == 4
    with pytest.raises(kms.exceptions.TagException):
        kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "aws:reserved", "TagValue": "x"}])
    with pytest.raises(kms.exceptions.TagException):
        kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": f"m{i}", "TagValue": "v"} for i in range(47)])


# IAM's aws:ResourceTag condition key in a key policy (AWS KMS developer guide, "ABAC for AWS KMS").
def test_a_policy_on_aws_resource_tag_follows_the_keys_tags(server, kms):
    role = "arn:aws:iam::111122223333:role/abac"
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*",
         "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": role}, "Action": "kms:GenerateMac", "Resource": "*",
         "Condition": {"StringEquals": {"aws:ResourceTag/Project": "alpha"}}}]}
    key_id = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC",
                            Policy=json.dumps(policy))["KeyMetadata"]["KeyId"]
    app = server.client(server.add_principal(role))
    with pytest.raises(ClientError) as e:
        app.generate_mac(KeyId=key_id, Message=b"m", MacAlgorithm="HMAC_SHA_256")
    assert error_code(e) == "AccessDeniedException"
    kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "Project", "TagValue": "alpha"}])
    assert app.generate_mac(KeyId=key_id, Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]


def test_aws_cli_generates_and_verifies_macs_and_lists_tags(server, kms):
    """`aws kms generate-mac`, `verify-mac` and `list-resource-tags`, unchanged."""
    run = server.aws

    key_id = run("create-key", "--key-spec", "HMAC_512", "--key-usage", "GENERATE_VERIFY_MAC",
                 "--tags", "TagKey=team,TagValue=cli")["KeyMetadata"]["KeyId"]
    msg_file = os.path.join(server.dir, "msg.bin")
    with open(msg_file, "wb") as f:
        f.write(b"from aws-cli")
    mac = run("generate-mac", "--key-id", key_id, "--mac-algorithm", "HMAC_SHA_512",
              "--message", "fileb://" + msg_file)["Mac"]
    assert len(base64.b64decode(mac)) == 64
    mac_file = os.path.join(server.dir, "mac.bin")
    with open(mac_file, "wb") as f:
        f.write(base64.b64decode(mac))
    assert run("verify-mac", "--key-id", key_id, "--mac-algorithm", "HMAC_SHA_512",
               "--message", "fileb://" + msg_file, "--mac", "fileb://" + mac_file)["MacValid"] is True
    assert run("list-resource-tags", "--key-id", key_id)["Tags"] == [{"TagKey": "team", "TagValue": "cli"}]
