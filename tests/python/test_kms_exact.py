"""AWS KMS's exact answers, each from the AWS page named beside it: statuses, error names and
messages, and the small operations (ListKeyPolicies, UpdateKeyDescription, ListKeyRotations)."""
import json
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError


def err(e):
    return e.value.response["Error"]["Code"], e.value.response["Error"].get("Message")


def status(e):
    return e.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_unknown_key_ids_and_other_regions_arns(kms):
    # Recorded from AWS (issue 10): a key id of no key's form, and a key ARN of another region.
    with pytest.raises(ClientError) as e:
        kms.describe_key(KeyId="fake-key-id")
    assert err(e) == ("NotFoundException", "Invalid keyId 'fake-key-id'") and status(e) == 400
    other = "arn:aws:kms:us-west-2:111122223333:key/00000000-0000-4000-8000-000000000000"
    with pytest.raises(ClientError) as e:
        kms.describe_key(KeyId=other)
    assert err(e) == ("NotFoundException", "Invalid arn us-west-2")
    missing = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(ClientError) as e:
        kms.describe_key(KeyId=missing)
    assert err(e) == ("NotFoundException",
                      f"Key 'arn:aws:kms:us-east-1:111122223333:key/{missing}' does not exist")


def test_invalid_ciphertext_has_no_message_member(kms):
    # Recorded from AWS (issue 10): InvalidCiphertextException's body is {"__type": ...} only.
    bodies = []
    kms.meta.events.register("before-parse.kms.Decrypt",
                             lambda response_dict, **_: bodies.append(response_dict["body"]))
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    ct = bytearray(kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"])
    ct[-1] ^= 1
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=bytes(ct))
    assert err(e)[0] == "InvalidCiphertextException"
    assert json.loads(bodies[-1]) == {"__type": "InvalidCiphertextException"}


def test_list_key_policies_and_update_key_description(kms):
    key = kms.create_key(Description="before")["KeyMetadata"]["KeyId"]
    # API reference, ListKeyPolicies: the only policy name is "default".
    out = kms.list_key_policies(KeyId=key)
    assert out["PolicyNames"] == ["default"] and out["Truncated"] is False
    # API reference, UpdateKeyDescription.
    kms.update_key_description(KeyId=key, Description="after")
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["Description"] == "after"
    with pytest.raises(ClientError) as e:
        kms.update_key_description(KeyId=key, Description="x" * 8193)
    assert err(e)[0] == "ValidationException"


def test_key_id_only_operations_refuse_aliases(kms):
    # API reference of each operation: KeyId is "key ID or key ARN" (no alias); an alias is not a
    # key id, as for any malformed key id (NotFoundException, "Invalid keyId").
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/exact-key-only", TargetKeyId=key)
    calls = {
        "enable_key_rotation": {}, "disable_key_rotation": {}, "get_key_rotation_status": {},
        "rotate_key_on_demand": {}, "get_key_policy": {"PolicyName": "default"},
        "put_key_policy": {"PolicyName": "default", "Policy": kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"]},
        "list_key_policies": {}, "enable_key": {}, "disable_key": {},
        "schedule_key_deletion": {}, "cancel_key_deletion": {},
        "update_key_description": {"Description": "d"}, "list_key_rotations": {},
    }
    for op, extra in calls.items():
        with pytest.raises(ClientError) as e:
            getattr(kms, op)(KeyId="alias/exact-key-only", **extra)
        assert err(e) == ("NotFoundException", "Invalid keyId 'alias/exact-key-only'"), op
    # DescribeKey takes an alias (API reference, DescribeKey).
    assert kms.describe_key(KeyId="alias/exact-key-only")["KeyMetadata"]["KeyId"] == key


def test_validation(kms):
    # API reference, CreateKey: KeySpec is an enum.
    with pytest.raises(ClientError) as e:
        kms.create_key(KeySpec="AES_128")
    assert err(e)[0] == "ValidationException"
    # API reference, GenerateRandom: without NumberOfBytes (recorded from AWS, issue 10).
    with pytest.raises(ClientError) as e:
        kms.generate_random()
    assert err(e)[0] == "ValidationException"
    # API reference, CreateAlias: "It can contain only alphanumeric characters, forward slashes
    # (/), underscores (_), and dashes (-). The alias name cannot begin with alias/aws/."
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    for name in ["alias/my:alias", "alias/aws/mine"]:
        with pytest.raises(ClientError) as e:
            kms.create_alias(AliasName=name, TargetKeyId=key)
        assert err(e)[0] == "InvalidAliasNameException", name


def test_rotation_rules(kms):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    first = kms.describe_key(KeyId=key)["KeyMetadata"]["CurrentKeyMaterialId"]
    # API reference, ListKeyRotations: the first material is no rotation.
    assert kms.list_key_rotations(KeyId=key)["Rotations"] == []
    # API reference, GetKeyRotationStatus: RotationPeriodInDays and NextRotationDate when enabled.
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    st = kms.get_key_rotation_status(KeyId=key)
    assert st["KeyRotationEnabled"] is True and st["RotationPeriodInDays"] == 90
    next_date = st["NextRotationDate"]
    # API reference, RotateKeyOnDemand: "On-demand rotations do not change existing automatic
    # rotation schedules."
    kms.rotate_key_on_demand(KeyId=key)
    assert kms.get_key_rotation_status(KeyId=key)["NextRotationDate"] == next_date
    assert abs(next_date - kms.describe_key(KeyId=key)["KeyMetadata"]["CreationDate"]) < timedelta(days=91)
    # KeyMetadata.CurrentKeyMaterialId changes; ListKeyRotations lists the rotation.
    current = kms.describe_key(KeyId=key)["KeyMetadata"]["CurrentKeyMaterialId"]
    assert current != first
    rotations = kms.list_key_rotations(KeyId=key)["Rotations"]
    assert [(r["KeyMaterialId"], r["RotationType"]) for r in rotations] == [(current, "ON_DEMAND")]
    # Developer Guide, "Perform on-demand key rotation": at most 25 times per KMS key
    # (LimitExceededException, Developer Guide "Resource quotas").
    for _ in range(24):
        kms.rotate_key_on_demand(KeyId=key)
    with pytest.raises(ClientError) as e:
        kms.rotate_key_on_demand(KeyId=key)
    assert err(e)[0] == "LimitExceededException"
    assert len(kms.list_key_rotations(KeyId=key, Limit=1000)["Rotations"]) == 25


def test_rotation_is_for_symmetric_keys_with_kms_material(kms):
    # API reference, EnableKeyRotation and RotateKeyOnDemand: not asymmetric, HMAC, or imported
    # key material (UnsupportedOperationException).
    keys = [
        kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC"),
        kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY"),
        kms.create_key(Origin="EXTERNAL"),
    ]
    for md in (k["KeyMetadata"] for k in keys):
        for op in (kms.enable_key_rotation, kms.rotate_key_on_demand):
            with pytest.raises(ClientError) as e:
                op(KeyId=md["KeyId"])
            assert err(e)[0] == "UnsupportedOperationException", (md["KeySpec"], md["Origin"])


def test_custom_key_stores_are_known_and_unsupported(kms):
    # AWS KMS API reference, DescribeCustomKeyStores / CreateCustomKeyStore: real operations, so
    # cloister-kms answers that it does not support them (no CloudHSM, no external key store
    # proxy) rather than that they do not exist.
    with pytest.raises(ClientError) as e:
        kms.describe_custom_key_stores()
    assert err(e)[0] == "UnsupportedOperationException" and status(e) == 400
    assert "custom key stores" in err(e)[1]
