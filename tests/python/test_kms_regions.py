"""Multi-Region keys against one cloister-kms serving three regions, through boto3 clients of
two regions and aws-cli: CreateKey MultiRegion, ReplicateKey, DescribeKey's
MultiRegionConfiguration, UpdatePrimaryRegion, and keys and aliases that live in their own region.

Each assertion follows the AWS KMS API reference page named beside it."""
import base64
import json

import pytest
from botocore.exceptions import ClientError

from conftest import Kms

ACCOUNT = "111122223333"


@pytest.fixture(scope="module")
def server():
    s = Kms(extra=("--replica-region", "us-west-2", "--replica-region", "eu-west-1"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def east(server):
    return server.client(region="us-east-1")


@pytest.fixture(scope="module")
def west(server):
    return server.client(region="us-west-2")


def err(e):
    return e.value.response["Error"]["Code"], e.value.response["Error"].get("Message")


def arn(region, key_id):
    return f"arn:aws:kms:{region}:{ACCOUNT}:key/{key_id}"


def test_replica_decrypts_what_the_primary_encrypted_and_back(east, west):
    # CreateKey: MultiRegion=true gives an mrk- key id and a PRIMARY configuration.
    md = east.create_key(MultiRegion=True, Description="primary")["KeyMetadata"]
    key_id = md["KeyId"]
    assert key_id.startswith("mrk-") and md["MultiRegion"] is True
    assert md["MultiRegionConfiguration"]["MultiRegionKeyType"] == "PRIMARY"

    # ReplicateKey: the replica has the same key id, its own ARN, description and tags.
    r = east.replicate_key(KeyId=key_id, ReplicaRegion="us-west-2", Description="replica",
                           Tags=[{"TagKey": "team", "TagValue": "blue"}])
    rmd = r["ReplicaKeyMetadata"]
    assert rmd["KeyId"] == key_id and rmd["Arn"] == arn("us-west-2", key_id)
    assert rmd["Description"] == "replica"
    assert r["ReplicaTags"] == [{"TagKey": "team", "TagValue": "blue"}]
    assert json.loads(r["ReplicaPolicy"])["Statement"]
    assert rmd["MultiRegionConfiguration"] == {
        "MultiRegionKeyType": "REPLICA",
        "PrimaryKey": {"Arn": arn("us-east-1", key_id), "Region": "us-east-1"},
        "ReplicaKeys": [{"Arn": arn("us-west-2", key_id), "Region": "us-west-2"}],
    }
    # DescribeKey: the primary's MultiRegionConfiguration lists the replica.
    cfg = east.describe_key(KeyId=key_id)["KeyMetadata"]["MultiRegionConfiguration"]
    assert cfg["ReplicaKeys"] == [{"Arn": arn("us-west-2", key_id), "Region": "us-west-2"}]

    # Encrypt in one region, decrypt in the other, both ways.
    ct = east.encrypt(KeyId=key_id, Plaintext=b"from the east")["CiphertextBlob"]
    out = west.decrypt(CiphertextBlob=ct)
    assert out["Plaintext"] == b"from the east" and out["KeyId"] == arn("us-west-2", key_id)
    ct = west.encrypt(KeyId=key_id, Plaintext=b"from the west")["CiphertextBlob"]
    assert east.decrypt(CiphertextBlob=ct)["Plaintext"] == b"from the west"

    # RotateKeyOnDemand on the primary rotates the replica's material too.
    east.rotate_key_on_demand(KeyId=key_id)
    ct = east.encrypt(KeyId=key_id, Plaintext=b"rotated")["CiphertextBlob"]
    assert west.decrypt(CiphertextBlob=ct)["Plaintext"] == b"rotated"
    assert (west.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]
            == east.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"])

    # ReplicateKey: one replica per region (AlreadyExistsException); only the primary replicates.
    with pytest.raises(ClientError) as e:
        east.replicate_key(KeyId=key_id, ReplicaRegion="us-west-2")
    assert err(e)[0] == "AlreadyExistsException"
    with pytest.raises(ClientError) as e:
        west.replicate_key(KeyId=key_id, ReplicaRegion="eu-west-1")
    assert err(e)[0] == "UnsupportedOperationException"

    # UpdatePrimaryRegion: the replica in us-west-2 becomes the primary, us-east-1's a replica.
    east.update_primary_region(KeyId=key_id, PrimaryRegion="us-west-2")
    cfg = west.describe_key(KeyId=key_id)["KeyMetadata"]["MultiRegionConfiguration"]
    assert cfg["MultiRegionKeyType"] == "PRIMARY"
    assert cfg["ReplicaKeys"] == [{"Arn": arn("us-east-1", key_id), "Region": "us-east-1"}]
    cfg = east.describe_key(KeyId=key_id)["KeyMetadata"]["MultiRegionConfiguration"]
    assert cfg["MultiRegionKeyType"] == "REPLICA"
    assert cfg["PrimaryKey"] == {"Arn": arn("us-west-2", key_id), "Region": "us-west-2"}
    # The new primary replicates.
    west.replicate_key(KeyId=key_id, ReplicaRegion="eu-west-1")


def test_keys_and_aliases_live_in_their_region(server, east, west):
    a = east.create_key()["KeyMetadata"]["KeyId"]
    b = west.create_key()["KeyMetadata"]["KeyId"]
    # ListKeys shows the request region's keys only.
    east_ids = {k["KeyId"] for k in east.list_keys()["Keys"]}
    west_ids = {k["KeyId"] for k in west.list_keys()["Keys"]}
    assert a in east_ids and a not in west_ids
    assert b in west_ids and b not in east_ids
    assert all(k["KeyArn"].startswith("arn:aws:kms:us-west-2:") for k in west.list_keys()["Keys"])

    # A single-Region key is invisible from another region, by id and by ARN (AWS's messages).
    with pytest.raises(ClientError) as e:
        west.describe_key(KeyId=a)
    assert err(e) == ("NotFoundException", f"Key '{arn('us-west-2', a)}' does not exist")
    with pytest.raises(ClientError) as e:
        west.describe_key(KeyId=arn("us-east-1", a))
    assert err(e) == ("NotFoundException", "Invalid arn us-east-1")
    ct = east.encrypt(KeyId=a, Plaintext=b"x")["CiphertextBlob"]
    with pytest.raises(ClientError) as e:
        west.decrypt(CiphertextBlob=ct)
    assert err(e)[0] == "InvalidCiphertextException"

    # The same alias name in two regions names each region's key.
    east.create_alias(AliasName="alias/regional", TargetKeyId=a)
    west.create_alias(AliasName="alias/regional", TargetKeyId=b)
    assert east.describe_key(KeyId="alias/regional")["KeyMetadata"]["KeyId"] == a
    assert west.describe_key(KeyId="alias/regional")["KeyMetadata"]["KeyId"] == b
    west_aliases = {x["AliasName"]: x for x in west.list_aliases()["Aliases"]}
    assert west_aliases["alias/regional"]["AliasArn"] == f"arn:aws:kms:us-west-2:{ACCOUNT}:alias/regional"
    assert west_aliases["alias/regional"]["TargetKeyId"] == b
    west.delete_alias(AliasName="alias/regional")
    assert east.describe_key(KeyId="alias/regional")["KeyMetadata"]["KeyId"] == a

    # A region the deployment does not serve is refused at the signature check.
    with pytest.raises(ClientError) as e:
        server.client(region="ap-south-1", retries=1).list_keys()
    assert err(e)[0] == "InvalidSignatureException"


def test_aws_cli_with_region(server):
    """`aws kms ... --region us-west-2`: the key lives in us-west-2."""
    def run(*args):
        return server.aws(*args, region="us-west-2")

    md = run("create-key", "--multi-region")["KeyMetadata"]
    assert md["Arn"] == arn("us-west-2", md["KeyId"])
    assert md["MultiRegionConfiguration"]["PrimaryKey"]["Region"] == "us-west-2"
    assert md["KeyId"] in {k["KeyId"] for k in run("list-keys")["Keys"]}
    # aws-cli v1 sends an inline blob argument as its raw bytes.
    ct = run("encrypt", "--key-id", md["KeyId"], "--plaintext", "cli secret")
    assert ct["KeyId"] == md["Arn"]
    assert base64.b64decode(ct["CiphertextBlob"])[1:37] == md["KeyId"].encode()


def test_a_primary_with_replicas_waits_for_their_deletion(east, west):
    # API reference, ScheduleKeyDeletion: "KMS will not delete a multi-Region primary key with
    # existing replica keys": PendingReplicaDeletion, no DeletionDate until the last replica goes.
    key_id = east.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    east.replicate_key(KeyId=key_id, ReplicaRegion="us-west-2")
    out = east.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    assert out["KeyState"] == "PendingReplicaDeletion" and "DeletionDate" not in out
    md = east.describe_key(KeyId=key_id)["KeyMetadata"]
    assert md["KeyState"] == "PendingReplicaDeletion" and md["PendingDeletionWindowInDays"] == 7
    with pytest.raises(ClientError) as e:
        east.encrypt(KeyId=key_id, Plaintext=b"x")
    assert err(e)[0] == "KMSInvalidStateException"
    # The replica is its own key: usable, and scheduled on its own.
    assert west.encrypt(KeyId=key_id, Plaintext=b"x")["KeyId"] == arn("us-west-2", key_id)
    assert west.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)["KeyState"] == "PendingDeletion"
    east.cancel_key_deletion(KeyId=key_id)
    assert east.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Disabled"
