"""boto3, unchanged, against cloister-kms: every operation and every error case of the KMS issue."""
import base64
import json
import subprocess

import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import Kms


def err(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def new_key(kms, **kw):
    return kms.create_key(**kw)["KeyMetadata"]


def test_create_describe_list(kms):
    k = new_key(kms, Description="boto3")
    assert k["KeyState"] == "Enabled" and k["KeySpec"] == "SYMMETRIC_DEFAULT" and k["Enabled"]
    assert k["Arn"].endswith(":key/" + k["KeyId"]) and k["Arn"].startswith("arn:aws:kms:us-east-1:111122223333:")
    assert kms.describe_key(KeyId=k["Arn"])["KeyMetadata"]["Description"] == "boto3"
    for _ in range(3):
        new_key(kms)
    seen, marker = [], None
    while True:
        page = kms.list_keys(Limit=2, **({"Marker": marker} if marker else {}))
        seen += page["Keys"]
        if not page["Truncated"]:
            break
        marker = page["NextMarker"]
    assert k["KeyId"] in {x["KeyId"] for x in seen} and len(seen) >= 4
    paginated = [x for p in kms.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 1}) for x in p["Keys"]]
    assert len(paginated) == len(seen)


def test_not_found_and_invalid_marker(kms):
    with pytest.raises(ClientError) as e:
        kms.describe_key(KeyId="00000000-0000-4000-8000-000000000000")
    assert err(e) == ("NotFoundException", 400)
    with pytest.raises(ClientError) as e:
        kms.describe_key(KeyId="alias/does-not-exist")
    assert err(e) == ("NotFoundException", 400)
    with pytest.raises(ClientError) as e:
        kms.list_keys(Marker="nonsense")
    assert err(e)[0] == "InvalidMarkerException"


def test_aliases(kms):
    a, b = new_key(kms), new_key(kms)
    kms.create_alias(AliasName="alias/boto-app", TargetKeyId=a["KeyId"])
    with pytest.raises(ClientError) as e:
        kms.create_alias(AliasName="alias/boto-app", TargetKeyId=a["KeyId"])
    assert err(e) == ("AlreadyExistsException", 400)
    with pytest.raises(ClientError) as e:
        kms.create_alias(AliasName="alias/aws/reserved", TargetKeyId=a["KeyId"])
    assert err(e)[0] == "InvalidAliasNameException"
    with pytest.raises(ClientError) as e:
        kms.create_alias(AliasName="not-an-alias", TargetKeyId=a["KeyId"])
    assert err(e)[0] == "ValidationException"
    assert kms.describe_key(KeyId="alias/boto-app")["KeyMetadata"]["KeyId"] == a["KeyId"]
    kms.update_alias(AliasName="alias/boto-app", TargetKeyId=b["KeyId"])
    assert kms.describe_key(KeyId="arn:aws:kms:us-east-1:111122223333:alias/boto-app")["KeyMetadata"]["KeyId"] == b["KeyId"]
    names = {x["AliasName"]: x["TargetKeyId"] for x in kms.list_aliases(KeyId=b["KeyId"])["Aliases"]}
    assert names == {"alias/boto-app": b["KeyId"]}
    kms.delete_alias(AliasName="alias/boto-app")
    with pytest.raises(ClientError) as e:
        kms.delete_alias(AliasName="alias/boto-app")
    assert err(e) == ("NotFoundException", 400)


def test_encrypt_decrypt_reencrypt_and_context(kms):
    k, other = new_key(kms), new_key(kms)
    ct = kms.encrypt(KeyId=k["KeyId"], Plaintext=b"hello", EncryptionContext={"ab": "c"})
    assert ct["KeyId"] == k["Arn"] and ct["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    out = kms.decrypt(CiphertextBlob=ct["CiphertextBlob"], EncryptionContext={"ab": "c"})
    assert out["Plaintext"] == b"hello" and out["KeyId"] == k["Arn"]
    for wrong in [{"a": "bc"}, {}, {"ab": "C"}, {"ab": "c", "x": "y"}]:
        with pytest.raises(ClientError) as e:
            kms.decrypt(CiphertextBlob=ct["CiphertextBlob"], EncryptionContext=wrong)
        assert err(e) == ("InvalidCiphertextException", 400), wrong
    tampered = bytearray(ct["CiphertextBlob"])
    tampered[-1] ^= 1
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=bytes(tampered), EncryptionContext={"ab": "c"})
    assert err(e)[0] == "InvalidCiphertextException"
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=ct["CiphertextBlob"], EncryptionContext={"ab": "c"}, KeyId=other["KeyId"])
    assert err(e)[0] == "IncorrectKeyException"
    re = kms.re_encrypt(CiphertextBlob=ct["CiphertextBlob"], SourceEncryptionContext={"ab": "c"},
                        DestinationKeyId=other["KeyId"], DestinationEncryptionContext={"z": "1"})
    assert re["SourceKeyId"] == k["Arn"] and re["KeyId"] == other["Arn"]
    assert kms.decrypt(CiphertextBlob=re["CiphertextBlob"], EncryptionContext={"z": "1"})["Plaintext"] == b"hello"


def test_validation_wording(kms):
    k = new_key(kms)
    with pytest.raises(ClientError) as e:
        kms.encrypt(KeyId=k["KeyId"], Plaintext=b"x" * 4097)
    assert err(e) == ("ValidationException", 400)
    assert e.value.response["Error"]["Message"] == (
        "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: "
        "Member must have length less than or equal to 4096")
    with pytest.raises(ClientError) as e:
        kms.generate_data_key(KeyId=k["KeyId"], NumberOfBytes=1025)
    assert err(e)[0] == "ValidationException" and "1 validation error detected" in str(e.value)
    with pytest.raises(ClientError) as e:
        kms.schedule_key_deletion(KeyId=k["KeyId"], PendingWindowInDays=5)
    assert err(e)[0] == "ValidationException"


def test_data_keys_and_random(kms):
    k = new_key(kms)
    d = kms.generate_data_key(KeyId=k["KeyId"], KeySpec="AES_256", EncryptionContext={"t": "1"})
    assert len(d["Plaintext"]) == 32 and d["KeyId"] == k["Arn"]
    assert kms.decrypt(CiphertextBlob=d["CiphertextBlob"], EncryptionContext={"t": "1"})["Plaintext"] == d["Plaintext"]
    assert len(kms.generate_data_key(KeyId=k["KeyId"], KeySpec="AES_128")["Plaintext"]) == 16
    assert len(kms.generate_data_key(KeyId=k["KeyId"], NumberOfBytes=64)["Plaintext"]) == 64
    w = kms.generate_data_key_without_plaintext(KeyId=k["KeyId"], KeySpec="AES_256")
    assert "Plaintext" not in w
    assert len(kms.decrypt(CiphertextBlob=w["CiphertextBlob"])["Plaintext"]) == 32
    assert len(kms.generate_random(NumberOfBytes=100)["Plaintext"]) == 100


def test_disabled_and_pending_deletion(kms):
    k = new_key(kms)
    ct = kms.encrypt(KeyId=k["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    kms.disable_key(KeyId=k["KeyId"])
    for call in [lambda: kms.encrypt(KeyId=k["KeyId"], Plaintext=b"x"), lambda: kms.decrypt(CiphertextBlob=ct),
                 lambda: kms.generate_data_key(KeyId=k["KeyId"], KeySpec="AES_256")]:
        with pytest.raises(ClientError) as e:
            call()
        assert err(e) == ("DisabledException", 400)
    kms.enable_key(KeyId=k["KeyId"])
    assert kms.decrypt(CiphertextBlob=ct)["Plaintext"] == b"x"
    r = kms.schedule_key_deletion(KeyId=k["KeyId"], PendingWindowInDays=7)
    assert r["KeyState"] == "PendingDeletion" and r["PendingWindowInDays"] == 7
    assert kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]["KeyState"] == "PendingDeletion"
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=ct)
    assert err(e) == ("KMSInvalidStateException", 400)
    with pytest.raises(ClientError) as e:
        kms.schedule_key_deletion(KeyId=k["KeyId"], PendingWindowInDays=7)
    assert err(e) == ("KMSInvalidStateException", 400)
    kms.cancel_key_deletion(KeyId=k["KeyId"])
    assert kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"


def test_rotation_keeps_old_versions(kms):
    k = new_key(kms)
    assert kms.get_key_rotation_status(KeyId=k["KeyId"])["KeyRotationEnabled"] is False
    kms.enable_key_rotation(KeyId=k["KeyId"], RotationPeriodInDays=180)
    st = kms.get_key_rotation_status(KeyId=k["KeyId"])
    assert st["KeyRotationEnabled"] and st["RotationPeriodInDays"] == 180
    old = kms.encrypt(KeyId=k["KeyId"], Plaintext=b"before")["CiphertextBlob"]
    assert kms.rotate_key_on_demand(KeyId=k["KeyId"])["KeyId"] == k["Arn"]
    new = kms.encrypt(KeyId=k["KeyId"], Plaintext=b"after")["CiphertextBlob"]
    assert old[37:41] == b"\x00\x00\x00\x01" and new[37:41] == b"\x00\x00\x00\x02"
    assert kms.decrypt(CiphertextBlob=old)["Plaintext"] == b"before"
    assert kms.decrypt(CiphertextBlob=new)["Plaintext"] == b"after"
    kms.disable_key_rotation(KeyId=k["KeyId"])
    assert kms.get_key_rotation_status(KeyId=k["KeyId"])["KeyRotationEnabled"] is False


def test_key_policies(server, kms):
    k = new_key(kms)
    role = "arn:aws:iam::111122223333:role/boto-app"
    app = server.client(server.add_principal(role))
    with pytest.raises(ClientError) as e:
        app.encrypt(KeyId=k["KeyId"], Plaintext=b"x")
    assert err(e) == ("AccessDeniedException", 400)
    default = json.loads(kms.get_key_policy(KeyId=k["KeyId"], PolicyName="default")["Policy"])
    assert default["Statement"][0]["Principal"] == {"AWS": "arn:aws:iam::111122223333:root"}
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": role}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
         "Condition": {"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["tenant"]},
                       "StringLike": {"kms:EncryptionContext:tenant": "acme-*"}}},
        {"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "acme-frozen"}}}]}
    kms.put_key_policy(KeyId=k["KeyId"], PolicyName="default", Policy=json.dumps(policy))
    ct = app.encrypt(KeyId=k["KeyId"], Plaintext=b"x", EncryptionContext={"tenant": "acme-1"})["CiphertextBlob"]
    assert app.decrypt(CiphertextBlob=ct, EncryptionContext={"tenant": "acme-1"})["Plaintext"] == b"x"
    with pytest.raises(ClientError) as e:
        app.encrypt(KeyId=k["KeyId"], Plaintext=b"x", EncryptionContext={"tenant": "other"})
    assert err(e)[0] == "AccessDeniedException"
    frozen = kms.encrypt(KeyId=k["KeyId"], Plaintext=b"x", EncryptionContext={"tenant": "acme-frozen"})["CiphertextBlob"]
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=frozen, EncryptionContext={"tenant": "acme-frozen"})
    assert err(e)[0] == "AccessDeniedException" and "explicit deny" in str(e.value)
    with pytest.raises(ClientError) as e:
        kms.put_key_policy(KeyId=k["KeyId"], PolicyName="default", Policy='{"Statement": "nope"}')
    assert err(e)[0] == "MalformedPolicyDocumentException"
    with pytest.raises(ClientError) as e:
        new_key(kms, Policy='{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"*"}]}')
    assert err(e)[0] == "MalformedPolicyDocumentException"


def test_authentication_errors(server):
    import boto3
    anon = boto3.client("kms", endpoint_url=server.url, region_name="us-east-1",
                        config=Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1}))
    with pytest.raises(ClientError) as e:
        anon.list_keys()
    assert err(e)[0] == "MissingAuthenticationTokenException"
    key, _ = server.admin
    with pytest.raises(ClientError) as e:
        server.client((key, "wrong-secret")).list_keys()
    assert err(e)[0] == "InvalidSignatureException"
    with pytest.raises(ClientError) as e:
        server.client(("AKIAUNKNOWN000000000", "x")).list_keys()
    assert err(e)[0] == "UnrecognizedClientException"
    with pytest.raises(ClientError) as e:
        server.client(region="eu-west-1").list_keys()
    assert err(e)[0] == "InvalidSignatureException"


def test_throttling():
    s = Kms(["--rate", "3"])
    try:
        kms = s.client(retries=1)
        codes = []
        for _ in range(20):
            try:
                kms.generate_random(NumberOfBytes=8)
                codes.append("ok")
            except ClientError as e:
                codes.append((e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]))
        assert codes.count(("ThrottlingException", 400)) >= 10, codes
        kms.list_keys()  # not a cryptographic operation
    finally:
        s.stop()


def test_recipient_requires_a_valid_document(kms):
    k = new_key(kms)
    ct = kms.encrypt(KeyId=k["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=ct, Recipient={"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
                                                  "AttestationDocument": b"not a document"})
    assert err(e)[0] == "ValidationException" and "ATT-COSE" in str(e.value)


def test_audit_log_is_intact(server):
    from conftest import KMS_BIN
    out = subprocess.run([KMS_BIN, "audit", "verify", *server.data_args()], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
    tail = subprocess.check_output([KMS_BIN, "audit", "tail", *server.data_args(), "-n", "500"], text=True)
    ops = {json.loads(line)["entry"]["operation"] for line in tail.splitlines()}
    assert {"CreateKey", "Decrypt", "PutKeyPolicy", "ScheduleKeyDeletion"} <= ops


def test_aws_cli_works_unchanged(server):
    """`aws kms ...` pointed at cloister-kms with --endpoint-url and the admin's credentials."""
    run = server.aws

    key_id = run("create-key", "--description", "from aws-cli")["KeyMetadata"]["KeyId"]
    run("create-alias", "--alias-name", "alias/from-cli", "--target-key-id", key_id)
    # aws-cli v1 sends inline blob arguments as raw bytes; binary input goes through fileb://.
    ct = run("encrypt", "--key-id", "alias/from-cli", "--plaintext", "cli secret",
             "--encryption-context", "purpose=test")["CiphertextBlob"]
    pt = run("decrypt", "--ciphertext-blob", server.file("ct.bin", base64.b64decode(ct)), "--encryption-context", "purpose=test")["Plaintext"]
    assert base64.b64decode(pt) == b"cli secret"
    assert any(a["AliasName"] == "alias/from-cli" for a in run("list-aliases")["Aliases"])
