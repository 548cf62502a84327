"""Secrets Manager through boto3, unchanged, against the real cloister-kms binary: values, versions
and staging labels, ClientRequestToken idempotency, deletion and restore, listing with filters and
pages, every modeled error with its HTTP status (400, as AWS answers; botocore's model gives the
exceptions no httpError), and the KMS key policy deciding every use of a value (kms:ViaService,
a disabled key, an enclave-only key). Each AWS-specific expectation names the API reference page
(or botocore model shape) it follows."""
import json
import urllib.request
import uuid

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

ACCOUNT = "111122223333"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
READER = f"arn:aws:iam::{ACCOUNT}:role/sm-reader"
VIA = "secretsmanager.us-east-1.amazonaws.com"


def err(excinfo):
    r = excinfo.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture(scope="module")
def sm(server):
    # No retries: a refusal must be the first answer.
    return server.client(service="secretsmanager", retries=1)


def name():
    return f"test/{uuid.uuid4().hex[:12]}"


def token():
    return str(uuid.uuid4())


# ---- values -------------------------------------------------------------------------------------

def test_create_get_put_update_round_trip(sm):
    n = name()
    # CreateSecret: ARN = arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 characters>.
    c = sm.create_secret(Name=n, SecretString='{"user": "app", "password": "one"}',
                         Description="db", Tags=[{"Key": "team", "Value": "payments"}])
    prefix = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:{n}-"
    assert c["ARN"].startswith(prefix) and len(c["ARN"]) == len(prefix) + 6
    assert c["Name"] == n
    v1 = c["VersionId"]
    g = sm.get_secret_value(SecretId=n)
    assert json.loads(g["SecretString"])["password"] == "one"
    assert g["VersionId"] == v1 and g["VersionStages"] == ["AWSCURRENT"] and g["ARN"] == c["ARN"]
    assert "SecretBinary" not in g
    # By full ARN and by partial ARN (the ARN without its suffix).
    assert sm.get_secret_value(SecretId=c["ARN"])["VersionId"] == v1
    assert sm.get_secret_value(SecretId=prefix[:-1])["VersionId"] == v1
    # PutSecretValue: a binary value, AWSCURRENT moves, AWSPREVIOUS follows.
    p = sm.put_secret_value(SecretId=c["ARN"], SecretBinary=b"\x00\x01binary")
    assert p["VersionStages"] == ["AWSCURRENT"] and p["ARN"] == c["ARN"]
    g2 = sm.get_secret_value(SecretId=n)
    assert g2["SecretBinary"] == b"\x00\x01binary" and "SecretString" not in g2
    prev = sm.get_secret_value(SecretId=n, VersionStage="AWSPREVIOUS")
    assert prev["VersionId"] == v1 and prev["VersionStages"] == ["AWSPREVIOUS"]
    assert sm.get_secret_value(SecretId=n, VersionId=v1)["SecretString"].startswith("{")
    # UpdateSecret: description and a new value.
    u = sm.update_secret(SecretId=n, Description="database", SecretString="three")
    assert u["VersionId"] not in (v1, p["VersionId"])
    assert sm.get_secret_value(SecretId=n)["SecretString"] == "three"
    d = sm.describe_secret(SecretId=n)
    assert d["Description"] == "database" and d["Tags"] == [{"Key": "team", "Value": "payments"}]
    assert d["VersionIdsToStages"] == {u["VersionId"]: ["AWSCURRENT"], p["VersionId"]: ["AWSPREVIOUS"]}
    assert d["CreatedDate"] <= d["LastChangedDate"]
    assert "DeletedDate" not in d and "KmsKeyId" not in d


def test_a_secret_without_a_value(sm):
    n = name()
    c = sm.create_secret(Name=n)
    assert "VersionId" not in c
    # boto/boto3#2794: a secret with no value answers ResourceNotFoundException.
    with pytest.raises(ClientError) as e:
        sm.get_secret_value(SecretId=n)
    assert err(e) == ("ResourceNotFoundException", 400)
    # Its first value gets AWSCURRENT whatever labels it is given.
    p = sm.put_secret_value(SecretId=n, SecretString="first", VersionStages=["AWSPENDING"])
    assert sorted(p["VersionStages"]) == ["AWSCURRENT", "AWSPENDING"]


def test_labels_and_versions(sm):
    n = name()
    v1 = sm.create_secret(Name=n, SecretString="v1")["VersionId"]
    # An external rotator: a pending version, then AWSCURRENT moved to it.
    v2 = sm.put_secret_value(SecretId=n, SecretString="v2", VersionStages=["AWSPENDING"])["VersionId"]
    assert sm.get_secret_value(SecretId=n)["SecretString"] == "v1"
    assert sm.get_secret_value(SecretId=n, VersionStage="AWSPENDING")["SecretString"] == "v2"
    # UpdateSecretVersionStage: AWSCURRENT sits on v1, so RemoveFromVersionId must name v1.
    with pytest.raises(ClientError) as e:
        sm.update_secret_version_stage(SecretId=n, VersionStage="AWSCURRENT", MoveToVersionId=v2)
    assert err(e) == ("InvalidParameterException", 400)
    r = sm.update_secret_version_stage(SecretId=n, VersionStage="AWSCURRENT", MoveToVersionId=v2,
                                       RemoveFromVersionId=v1)
    assert r["Name"] == n
    stages = sm.describe_secret(SecretId=n)["VersionIdsToStages"]
    assert sorted(stages[v2]) == ["AWSCURRENT", "AWSPENDING"] and stages[v1] == ["AWSPREVIOUS"]
    sm.update_secret_version_stage(SecretId=n, VersionStage="AWSPENDING", RemoveFromVersionId=v2)
    assert sm.describe_secret(SecretId=n)["VersionIdsToStages"][v2] == ["AWSCURRENT"]
    # One version per label: a custom label moved from v1 to v2.
    sm.update_secret_version_stage(SecretId=n, VersionStage="blue", MoveToVersionId=v1)
    sm.update_secret_version_stage(SecretId=n, VersionStage="blue", MoveToVersionId=v2, RemoveFromVersionId=v1)
    stages = sm.describe_secret(SecretId=n)["VersionIdsToStages"]
    assert sorted(stages[v2]) == ["AWSCURRENT", "blue"] and stages[v1] == ["AWSPREVIOUS"]
    # A third value: v1 loses its last label and is deprecated.
    v3 = sm.put_secret_value(SecretId=n, SecretString="v3")["VersionId"]
    listed = sm.list_secret_version_ids(SecretId=n)
    assert {v["VersionId"] for v in listed["Versions"]} == {v2, v3}
    assert listed["ARN"].endswith(listed["Name"] + listed["ARN"][-7:])
    every = sm.list_secret_version_ids(SecretId=n, IncludeDeprecated=True)["Versions"]
    assert {v["VersionId"] for v in every} == {v1, v2, v3}
    assert [v for v in every if v["VersionId"] == v1][0].get("VersionStages") is None
    assert all(v["KmsKeyIds"][0].startswith("arn:aws:kms:us-east-1:") for v in every)
    # A deprecated version is still readable by id.
    assert sm.get_secret_value(SecretId=n, VersionId=v1)["SecretString"] == "v1"
    # Unknown versions and labels.
    with pytest.raises(ClientError) as e:
        sm.update_secret_version_stage(SecretId=n, VersionStage="x", MoveToVersionId=token())
    assert err(e) == ("InvalidParameterException", 400)
    with pytest.raises(ClientError) as e:
        sm.get_secret_value(SecretId=n, VersionStage="nope")
    assert err(e) == ("ResourceNotFoundException", 400)
    # VersionId and VersionStage naming different versions.
    with pytest.raises(ClientError) as e:
        sm.get_secret_value(SecretId=n, VersionId=v1, VersionStage="AWSCURRENT")
    assert err(e) == ("ResourceNotFoundException", 400)


def test_client_request_token_idempotency(sm):
    n = name()
    t = token()
    c = sm.create_secret(Name=n, SecretString="a", ClientRequestToken=t)
    assert c["VersionId"] == t
    # CreateSecret retried with the same token and value: the same answer.
    assert sm.create_secret(Name=n, SecretString="a", ClientRequestToken=t)["VersionId"] == t
    with pytest.raises(ClientError) as e:
        sm.create_secret(Name=n, SecretString="other", ClientRequestToken=t)
    assert err(e) == ("ResourceExistsException", 400)
    # PutSecretValue: same token and same value is a no-op returning the version...
    t2 = token()
    p = sm.put_secret_value(SecretId=n, SecretString="b", ClientRequestToken=t2)
    again = sm.put_secret_value(SecretId=n, SecretString="b", ClientRequestToken=t2)
    assert again["VersionId"] == p["VersionId"] == t2 and again["VersionStages"] == ["AWSCURRENT"]
    assert len(sm.list_secret_version_ids(SecretId=n)["Versions"]) == 2
    # ... another value (or kind) is ResourceExistsException and changes nothing.
    for other in ({"SecretString": "c"}, {"SecretBinary": b"b"}):
        with pytest.raises(ClientError) as e:
            sm.put_secret_value(SecretId=n, ClientRequestToken=t2, **other)
        assert err(e) == ("ResourceExistsException", 400)
    assert sm.get_secret_value(SecretId=n)["SecretString"] == "b"
    # The first version's token with its own value: a no-op that keeps the labels where they are.
    assert sm.put_secret_value(SecretId=n, SecretString="a", ClientRequestToken=t)["VersionStages"] == ["AWSPREVIOUS"]
    assert sm.get_secret_value(SecretId=n)["VersionId"] == t2


def test_deletion_with_a_recovery_window_and_restore(sm):
    n = name()
    c = sm.create_secret(Name=n, SecretString="keep me")
    d = sm.delete_secret(SecretId=n, RecoveryWindowInDays=7)
    assert d["ARN"] == c["ARN"]
    window = (d["DeletionDate"] - sm.describe_secret(SecretId=n)["DeletedDate"]).total_seconds()
    assert abs(window - 7 * 86400) < 5
    # A secret scheduled for deletion answers InvalidRequestException to reads and writes.
    for call in (lambda: sm.get_secret_value(SecretId=n),
                 lambda: sm.put_secret_value(SecretId=n, SecretString="x"),
                 lambda: sm.update_secret(SecretId=n, Description="x"),
                 lambda: sm.tag_resource(SecretId=n, Tags=[{"Key": "k", "Value": "v"}]),
                 lambda: sm.delete_secret(SecretId=n),
                 lambda: sm.create_secret(Name=n, SecretString="again")):
        with pytest.raises(ClientError) as e:
            call()
        assert err(e) == ("InvalidRequestException", 400)
    # ListSecrets leaves it out unless asked.
    names = lambda **kw: {s["Name"] for s in sm.list_secrets(Filters=[{"Key": "name", "Values": [n]}], **kw)["SecretList"]}
    assert names() == set()
    assert names(IncludePlannedDeletion=True) == {n}
    r = sm.restore_secret(SecretId=n)
    assert r == {**r, "ARN": c["ARN"], "Name": n}
    assert sm.get_secret_value(SecretId=n)["SecretString"] == "keep me"
    assert "DeletedDate" not in sm.describe_secret(SecretId=n)
    # The default window is 30 days.
    d = sm.delete_secret(SecretId=n)
    assert abs((d["DeletionDate"] - sm.describe_secret(SecretId=n)["DeletedDate"]).total_seconds() - 30 * 86400) < 5
    sm.restore_secret(SecretId=n)


def test_force_delete(sm):
    n = name()
    sm.create_secret(Name=n, SecretString="gone")
    sm.delete_secret(SecretId=n, ForceDeleteWithoutRecovery=True)
    with pytest.raises(ClientError) as e:
        sm.describe_secret(SecretId=n)
    assert err(e) == ("ResourceNotFoundException", 400)
    # The name is free again; forcing the deletion of a secret that does not exist is no error.
    sm.create_secret(Name=n, SecretString="new")
    assert sm.get_secret_value(SecretId=n)["SecretString"] == "new"
    sm.delete_secret(SecretId=name(), ForceDeleteWithoutRecovery=True)
    # Not both.
    with pytest.raises(ClientError) as e:
        sm.delete_secret(SecretId=n, ForceDeleteWithoutRecovery=True, RecoveryWindowInDays=7)
    assert err(e) == ("InvalidParameterException", 400)
    for days in (6, 31):
        with pytest.raises(ClientError) as e:
            sm.delete_secret(SecretId=n, RecoveryWindowInDays=days)
        assert err(e) == ("InvalidParameterException", 400)
    assert sm.get_secret_value(SecretId=n)["SecretString"] == "new"


def test_tags(sm):
    n = name()
    sm.create_secret(Name=n, Tags=[{"Key": "a", "Value": "1"}])
    sm.tag_resource(SecretId=n, Tags=[{"Key": "a", "Value": "2"}, {"Key": "b", "Value": "3"}])
    assert sm.describe_secret(SecretId=n)["Tags"] == [{"Key": "a", "Value": "2"}, {"Key": "b", "Value": "3"}]
    sm.untag_resource(SecretId=n, TagKeys=["a"])
    assert sm.describe_secret(SecretId=n)["Tags"] == [{"Key": "b", "Value": "3"}]
    with pytest.raises(ClientError) as e:
        sm.tag_resource(SecretId=n, Tags=[{"Key": "aws:reserved", "Value": "x"}])
    assert err(e) == ("InvalidParameterException", 400)


# ---- listing ------------------------------------------------------------------------------------

def test_list_secrets_filters_and_pages(sm):
    run = uuid.uuid4().hex[:8]
    made = []
    for i in range(5):
        n = f"list-{run}/s{i}"
        sm.create_secret(Name=n, Description=f"Item {i} of {run}",
                         Tags=[{"Key": "parity", "Value": "even" if i % 2 == 0 else "odd"}])
        made.append(n)
    f = lambda key, *values: {"Key": key, "Values": list(values)}
    names = lambda *filters: [s["Name"] for s in sm.list_secrets(Filters=list(filters))["SecretList"]]
    assert names(f("name", f"list-{run}/")) == made
    assert names(f("name", f"list-{run}/"), f("tag-value", "odd")) == [made[1], made[3]]
    assert names(f("name", f"list-{run}/"), f("tag-value", "!odd")) == [made[0], made[2], made[4]]
    assert names(f("name", f"list-{run}/s1", f"list-{run}/s2")) == [made[1], made[2]]
    # description: prefix, not case-sensitive; name: case-sensitive.
    assert names(f("description", f"item 3 of {run}")) == [made[3]]
    assert names(f("name", f"LIST-{run}/")) == []
    assert names(f("all", f"{run} EVEN"), f("name", "list-")) == [made[0], made[2], made[4]]
    assert names(f("tag-key", "parity"), f("name", f"list-{run}/s4")) == [made[4]]
    # SortOrder desc reverses the creation order.
    desc = sm.list_secrets(Filters=[f("name", f"list-{run}/")], SortOrder="desc")["SecretList"]
    assert [s["Name"] for s in desc] == made[::-1]
    # Pages of two, through NextToken, and the paginator.
    seen, kw = [], {}
    while True:
        page = sm.list_secrets(Filters=[f("name", f"list-{run}/")], MaxResults=2, **kw)
        assert len(page["SecretList"]) <= 2
        seen += [s["Name"] for s in page["SecretList"]]
        if "NextToken" not in page:
            break
        kw = {"NextToken": page["NextToken"]}
    assert seen == made
    pages = sm.get_paginator("list_secrets").paginate(Filters=[f("name", f"list-{run}/")],
                                                       PaginationConfig={"PageSize": 3})
    assert [s["Name"] for p in pages for s in p["SecretList"]] == made
    entry = sm.list_secrets(Filters=[f("name", made[0])])["SecretList"][0]
    assert entry["Tags"] == [{"Key": "parity", "Value": "even"}] and "CreatedDate" in entry
    with pytest.raises(ClientError) as e:
        sm.list_secrets(NextToken="not-a-token")
    assert err(e) == ("InvalidNextTokenException", 400)


def test_list_secret_version_ids_pages(sm):
    n = name()
    sm.create_secret(Name=n, SecretString="0")
    for i in range(1, 5):
        sm.put_secret_value(SecretId=n, SecretString=str(i))
    seen, kw = [], {}
    while True:
        page = sm.list_secret_version_ids(SecretId=n, MaxResults=2, IncludeDeprecated=True, **kw)
        seen += [v["VersionId"] for v in page["Versions"]]
        if "NextToken" not in page:
            break
        kw = {"NextToken": page["NextToken"]}
    assert len(seen) == len(set(seen)) == 5
    with pytest.raises(ClientError) as e:
        sm.list_secret_version_ids(SecretId=n, NextToken="bad")
    assert err(e) == ("InvalidNextTokenException", 400)


def test_batch_get_secret_value(sm):
    a, b = name(), name()
    sm.create_secret(Name=a, SecretString="A")
    sm.create_secret(Name=b, SecretBinary=b"B")
    missing = name()
    r = sm.batch_get_secret_value(SecretIdList=[a, b, missing])
    assert {v["Name"]: v.get("SecretString", v.get("SecretBinary")) for v in r["SecretValues"]} == {a: "A", b: b"B"}
    assert r["Errors"] == [{"SecretId": missing, "ErrorCode": "ResourceNotFoundException",
                            "Message": "Secrets Manager can't find the specified secret."}]
    by_filter = sm.batch_get_secret_value(Filters=[{"Key": "name", "Values": [a]}])
    assert [v["SecretString"] for v in by_filter["SecretValues"]] == ["A"]
    with pytest.raises(ClientError) as e:
        sm.batch_get_secret_value(SecretIdList=[a], Filters=[{"Key": "name", "Values": [a]}])
    assert err(e) == ("InvalidParameterException", 400)


# ---- errors -------------------------------------------------------------------------------------

def test_every_modeled_error_with_its_status(sm):
    n = name()
    sm.create_secret(Name=n, SecretString="x")
    # A version holding 20 labels (AWSCURRENT and 19 more): the most a version holds.
    full = sm.put_secret_value(SecretId=n, SecretString="full",
                               VersionStages=["AWSCURRENT"] + [f"l{i}" for i in range(19)])["VersionId"]
    cases = [
        ("ResourceNotFoundException", lambda: sm.describe_secret(SecretId=name())),
        ("ResourceNotFoundException", lambda: sm.get_secret_value(SecretId=name())),
        ("ResourceExistsException", lambda: sm.create_secret(Name=n, SecretString="y")),
        ("InvalidParameterException", lambda: sm.create_secret(Name="bad name!", SecretString="y")),
        ("InvalidParameterException", lambda: sm.create_secret(Name=name(), SecretString="y", SecretBinary=b"y")),
        ("InvalidParameterException", lambda: sm.put_secret_value(SecretId=n)),
        ("InvalidRequestException", lambda: sm.rotate_secret(SecretId=n)),
        ("InvalidNextTokenException", lambda: sm.list_secrets(NextToken="x")),
        ("EncryptionFailure", lambda: sm.create_secret(Name=name(), SecretString="y",
                                                       KmsKeyId="alias/does-not-exist")),
        # botocore checks minimum lengths itself, not maximums: the server does.
        ("ValidationException", lambda: sm.get_secret_value(SecretId=n, VersionId="x" * 65)),
        ("LimitExceededException", lambda: sm.update_secret_version_stage(
            SecretId=n, VersionStage="one-too-many", MoveToVersionId=full)),
    ]
    for code, call in cases:
        with pytest.raises(ClientError) as e:
            call()
        assert err(e) == (code, 400), code
        assert e.value.response["Error"]["Message"], code


def test_rotation_is_refused_with_the_way_to_rotate_externally(sm):
    n = name()
    sm.create_secret(Name=n, SecretString="x")
    with pytest.raises(ClientError) as e:
        sm.rotate_secret(SecretId=n, RotationLambdaARN="arn:aws:lambda:us-east-1:111122223333:function:f")
    assert err(e) == ("InvalidRequestException", 400)
    msg = e.value.response["Error"]["Message"]
    assert "AWSPENDING" in msg and "UpdateSecretVersionStage" in msg and "PutSecretValue" in msg


def test_a_request_signed_for_another_service_is_refused(server):
    # The SigV4 scope must name the service the target names.
    key, secret = server.admin
    body = json.dumps({})
    req = AWSRequest(method="POST", url=server.url + "/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "secretsmanager.ListSecrets"})
    SigV4Auth(Credentials(key, secret), "kms", "us-east-1").add_auth(req)
    prepared = req.prepare()
    r = urllib.request.Request(prepared.url, data=body.encode(), headers=dict(prepared.headers), method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(r)
    answer = json.loads(e.value.read())
    assert answer["__type"] == "InvalidSignatureException"
    assert "secretsmanager" in answer["Message"]


# ---- the key policy decides ---------------------------------------------------------------------

def policy(*statements):
    admin = {"Sid": "admin", "Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"}
    return json.dumps({"Version": "2012-10-17", "Statement": [admin, *statements]})


def test_a_key_usable_only_through_secrets_manager(server, kms, sm):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    # Decrypt denied unless it comes through Secrets Manager (kms:ViaService).
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=policy(
        {"Sid": "only-via-sm", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt",
         "Resource": "*", "Condition": {"StringNotEquals": {"kms:ViaService": VIA}}}))
    n = name()
    sm.create_secret(Name=n, KmsKeyId=key, SecretString="via sm")
    assert sm.get_secret_value(SecretId=n)["SecretString"] == "via sm"
    assert sm.describe_secret(SecretId=n)["KmsKeyId"] == key
    ct = kms.encrypt(KeyId=key, Plaintext=b"direct")["CiphertextBlob"]
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=ct)
    assert err(e) == ("AccessDeniedException", 400)
    # And the reverse: Decrypt denied through Secrets Manager.
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=policy(
        {"Sid": "not-via-sm", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt",
         "Resource": "*", "Condition": {"StringEquals": {"kms:ViaService": VIA}}}))
    with pytest.raises(ClientError) as e:
        sm.get_secret_value(SecretId=n)
    assert err(e) == ("AccessDeniedException", 400)
    assert e.value.response["Error"]["Message"] == "Access to KMS is not allowed"
    assert kms.decrypt(CiphertextBlob=ct)["Plaintext"] == b"direct"


def test_another_principal_needs_the_key_policy(server, kms, sm):
    reader = server.client(server.add_principal(READER), service="secretsmanager", retries=1)
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    n = name()
    sm.create_secret(Name=n, KmsKeyId=key, SecretString="for the reader")
    # Metadata is open to the account (no IAM here); the value is not, until the key policy says so.
    assert reader.describe_secret(SecretId=n)["Name"] == n
    with pytest.raises(ClientError) as e:
        reader.get_secret_value(SecretId=n)
    assert err(e) == ("AccessDeniedException", 400)
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=policy(
        {"Sid": "reader", "Effect": "Allow", "Principal": {"AWS": READER}, "Action": "kms:Decrypt",
         "Resource": "*", "Condition": {"StringEquals": {"kms:ViaService": VIA,
                                                         "kms:EncryptionContext:SecretARN": reader.describe_secret(SecretId=n)["ARN"]}}}))
    assert reader.get_secret_value(SecretId=n)["SecretString"] == "for the reader"
    # Writing needs kms:GenerateDataKey, which the reader does not have.
    with pytest.raises(ClientError) as e:
        reader.put_secret_value(SecretId=n, SecretString="overwrite")
    assert err(e) == ("AccessDeniedException", 400)


def test_a_disabled_key_fails_reads_and_writes(kms, sm):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    n = name()
    sm.create_secret(Name=n, KmsKeyId=key, SecretString="x")
    kms.disable_key(KeyId=key)
    with pytest.raises(ClientError) as e:
        sm.get_secret_value(SecretId=n)
    assert err(e) == ("DecryptionFailure", 400)
    with pytest.raises(ClientError) as e:
        sm.put_secret_value(SecretId=n, SecretString="y")
    assert err(e) == ("EncryptionFailure", 400)
    kms.enable_key(KeyId=key)
    assert sm.get_secret_value(SecretId=n)["SecretString"] == "x"


def test_an_enclave_only_key_refuses_plain_reads(kms, sm):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    pcr0 = "ab" * 48
    # The owner may seal (GenerateDataKey) but Decrypt needs an attested recipient.
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Sid": "admin", "Effect": "Allow", "Principal": {"AWS": ROOT},
             "Action": ["kms:Describe*", "kms:Get*", "kms:Put*", "kms:List*", "kms:GenerateDataKey*",
                        "kms:Encrypt", "kms:Enable*", "kms:Disable*"], "Resource": "*"},
            {"Sid": "enclave", "Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:Decrypt",
             "Resource": "*", "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": pcr0}}},
        ]}))
    n = name()
    sm.create_secret(Name=n, KmsKeyId=key, SecretString="enclave only")
    with pytest.raises(ClientError) as e:
        sm.get_secret_value(SecretId=n)
    # AWS's own answer when the caller may not use the key (aws/aws-cdk#7677).
    assert err(e) == ("AccessDeniedException", 400)
    assert e.value.response["Error"]["Message"] == "Access to KMS is not allowed"
    r = sm.batch_get_secret_value(SecretIdList=[n])
    assert r["SecretValues"] == [] and r["Errors"][0]["ErrorCode"] == "AccessDeniedException"


def test_changing_the_key_reencrypts_the_labelled_versions(kms, sm):
    # UpdateSecret, KmsKeyId: "the KMS key that Secrets Manager uses to encrypt new secret versions
    # as well as any existing versions with the staging labels AWSCURRENT, AWSPENDING, or AWSPREVIOUS".
    old, new = (kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(2))
    n = name()
    v1 = sm.create_secret(Name=n, KmsKeyId=old, SecretString="one")["VersionId"]
    v2 = sm.put_secret_value(SecretId=n, SecretString="two")["VersionId"]
    v3 = sm.put_secret_value(SecretId=n, SecretString="three")["VersionId"]  # v1 deprecated
    sm.update_secret(SecretId=n, KmsKeyId=new)
    assert sm.describe_secret(SecretId=n)["KmsKeyId"] == new
    keys = {v["VersionId"]: v["KmsKeyIds"][0].split("/")[-1]
            for v in sm.list_secret_version_ids(SecretId=n, IncludeDeprecated=True)["Versions"]}
    assert keys == {v1: old, v2: new, v3: new}
    kms.disable_key(KeyId=old)
    assert sm.get_secret_value(SecretId=n)["SecretString"] == "three"
    assert sm.get_secret_value(SecretId=n, VersionStage="AWSPREVIOUS")["SecretString"] == "two"
    # The deprecated version stays under the old key.
    with pytest.raises(ClientError) as e:
        sm.get_secret_value(SecretId=n, VersionId=v1)
    assert err(e) == ("DecryptionFailure", 400)
    # New versions use the new key.
    v4 = sm.put_secret_value(SecretId=n, SecretString="four")["VersionId"]
    assert sm.get_secret_value(SecretId=n, VersionId=v4)["SecretString"] == "four"


def test_get_random_password(sm):
    p = sm.get_random_password(PasswordLength=40, ExcludeCharacters="abc", ExcludePunctuation=True)["RandomPassword"]
    assert len(p) == 40 and p.isalnum() and not set("abc") & set(p)
    assert any(c.islower() for c in p) and any(c.isupper() for c in p) and any(c.isdigit() for c in p)
    assert sm.get_random_password()["RandomPassword"] != sm.get_random_password()["RandomPassword"]
    with pytest.raises(ClientError) as e:
        sm.get_random_password(ExcludeLowercase=True, ExcludeUppercase=True, ExcludeNumbers=True,
                               ExcludePunctuation=True)
    assert err(e) == ("InvalidParameterException", 400)


def test_operations_left_out_say_so(sm):
    n = name()
    sm.create_secret(Name=n)
    for call in (lambda: sm.get_resource_policy(SecretId=n),
                 lambda: sm.put_resource_policy(SecretId=n, ResourcePolicy="{}"),
                 lambda: sm.replicate_secret_to_regions(SecretId=n, AddReplicaRegions=[{"Region": "eu-west-1"}]),
                 lambda: sm.cancel_rotate_secret(SecretId=n)):
        with pytest.raises(ClientError) as e:
            call()
        assert err(e) == ("InvalidRequestException", 400)
        assert "not supported by cloister-kms" in e.value.response["Error"]["Message"]
