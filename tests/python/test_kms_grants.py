"""Grants through boto3 and aws-cli, unchanged, against cloister-kms: CreateGrant, ListGrants,
ListRetirableGrants, RetireGrant, RevokeGrant, and a second principal using a key through a grant.
Each AWS-specific expectation names the AWS API reference page it follows."""
import re

import pytest
from botocore.exceptions import ClientError

APP = "arn:aws:iam::111122223333:role/grants-app"
OTHER = "arn:aws:iam::111122223333:role/grants-other"


def err(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture(scope="module")
def app(server):
    # No retries: a refusal must be the first answer, not a retried one.
    return server.client(server.add_principal(APP), retries=1)


def new_key(kms):
    return kms.create_key()["KeyMetadata"]["KeyId"]


def test_the_grantee_encrypts_and_decrypts_through_the_grant_until_it_is_retired(kms, app):
    key = new_key(kms)
    with pytest.raises(ClientError) as e:
        app.encrypt(KeyId=key, Plaintext=b"x")
    assert err(e) == ("AccessDeniedException", 400)
    # API reference, CreateGrant: GrantId is 64 hex digits; GrantToken is opaque.
    g = kms.create_grant(KeyId=key, GranteePrincipal=APP, Operations=["Encrypt", "Decrypt"],
                         RetiringPrincipal=APP)
    assert re.fullmatch(r"[0-9a-f]{64}", g["GrantId"])
    assert g["GrantToken"]
    ct = app.encrypt(KeyId=key, Plaintext=b"through a grant", EncryptionContext={"k": "v"},
                     GrantTokens=[g["GrantToken"]])["CiphertextBlob"]
    assert app.decrypt(CiphertextBlob=ct, EncryptionContext={"k": "v"})["Plaintext"] == b"through a grant"
    # The grant carries only its operations.
    with pytest.raises(ClientError) as e:
        app.generate_data_key(KeyId=key, KeySpec="AES_256")
    assert err(e) == ("AccessDeniedException", 400)
    # API reference, RetireGrant: the retiring principal retires it by token; effective at once
    # (this KMS is strongly consistent).
    app.retire_grant(GrantToken=g["GrantToken"])
    with pytest.raises(ClientError) as e:
        app.decrypt(CiphertextBlob=ct, EncryptionContext={"k": "v"})
    assert err(e) == ("AccessDeniedException", 400)
    assert kms.list_grants(KeyId=key)["Grants"] == []


def test_constraints_are_enforced(kms, app):
    key = new_key(kms)
    # API reference, GrantConstraints: keys compare regardless of case, values exactly.
    kms.create_grant(KeyId=key, GranteePrincipal=APP, Operations=["GenerateDataKey", "Decrypt"],
                     Constraints={"EncryptionContextEquals": {"Tenant": "acme"}})
    dk = app.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext={"tenant": "acme"})
    out = app.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext={"tenant": "acme"})
    assert out["Plaintext"] == dk["Plaintext"]
    for ec in [{"tenant": "ACME"}, {}, {"tenant": "acme", "extra": "1"}]:
        with pytest.raises(ClientError) as e:
            app.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext=ec)
        assert err(e) == ("AccessDeniedException", 400), ec
    entry = kms.list_grants(KeyId=key)["Grants"][0]
    assert entry["Constraints"] == {"EncryptionContextEquals": {"Tenant": "acme"}}
    assert sorted(entry["Operations"]) == ["Decrypt", "GenerateDataKey"]


def test_revoke_takes_effect_immediately_and_needs_the_policy(kms, app):
    key = new_key(kms)
    g = kms.create_grant(KeyId=key, GranteePrincipal=APP, Operations=["Encrypt"])
    app.encrypt(KeyId=key, Plaintext=b"x")
    # API reference, RevokeGrant: kms:RevokeGrant in the key policy; the grantee has none.
    with pytest.raises(ClientError) as e:
        app.revoke_grant(KeyId=key, GrantId=g["GrantId"])
    assert err(e) == ("AccessDeniedException", 400)
    # API reference, RetireGrant: the grantee may retire only if the grant allows RetireGrant.
    with pytest.raises(ClientError) as e:
        app.retire_grant(KeyId=key, GrantId=g["GrantId"])
    assert err(e) == ("AccessDeniedException", 400)
    kms.revoke_grant(KeyId=key, GrantId=g["GrantId"])
    with pytest.raises(ClientError) as e:
        app.encrypt(KeyId=key, Plaintext=b"x")
    assert err(e) == ("AccessDeniedException", 400)
    # A grant id that names no grant: NotFoundException, as AWS answers.
    with pytest.raises(ClientError) as e:
        kms.revoke_grant(KeyId=key, GrantId=g["GrantId"])
    assert err(e) == ("NotFoundException", 400)


def test_errors_as_aws_names_them(kms):
    key = new_key(kms)
    hmac = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
    # API reference, CreateGrant: operations must be valid for the key type.
    with pytest.raises(ClientError) as e:
        kms.create_grant(KeyId=hmac, GranteePrincipal=APP, Operations=["Decrypt"])
    assert err(e) == ("ValidationException", 400)
    # DryRun: DryRunOperationException (HTTP 412), nothing created.
    with pytest.raises(ClientError) as e:
        kms.create_grant(KeyId=key, GranteePrincipal=APP, Operations=["Decrypt"], DryRun=True)
    assert err(e) == ("DryRunOperationException", 412)
    assert kms.list_grants(KeyId=key)["Grants"] == []
    with pytest.raises(ClientError) as e:
        kms.create_grant(KeyId=key, GranteePrincipal=APP, Operations=["Decrypt"], GrantTokens=["not a token"])
    assert err(e) == ("InvalidGrantTokenException", 400)
    with pytest.raises(ClientError) as e:
        kms.retire_grant(GrantToken="AAAA")
    assert err(e) == ("InvalidGrantTokenException", 400)
    with pytest.raises(ClientError) as e:
        kms.revoke_grant(KeyId=key, GrantId="not-a-grant-id")
    assert err(e) == ("InvalidGrantIdException", 400)
    # Name: the same name and parameters give the same grant.
    a = kms.create_grant(KeyId=key, GranteePrincipal=APP, Operations=["Decrypt"], Name="retry-me")
    b = kms.create_grant(KeyId=key, GranteePrincipal=APP, Operations=["Decrypt"], Name="retry-me")
    assert a["GrantId"] == b["GrantId"]
    assert len(kms.list_grants(KeyId=key)["Grants"]) == 1


def test_list_filters_and_paging(kms, app):
    key = new_key(kms)
    made = []
    for i in range(5):
        grantee = APP if i % 2 == 0 else OTHER
        made.append(kms.create_grant(KeyId=key, GranteePrincipal=grantee, Operations=["Encrypt"],
                                     RetiringPrincipal=APP)["GrantId"])
    # API reference, ListGrants: Limit, Marker/NextMarker, Truncated; boto3's paginator pages.
    pages = list(kms.get_paginator("list_grants").paginate(KeyId=key, PaginationConfig={"PageSize": 2}))
    assert len(pages) == 3
    assert sorted(g["GrantId"] for p in pages for g in p["Grants"]) == sorted(made)
    assert all(g["KeyId"].endswith(key) and g["IssuingAccount"] == "arn:aws:iam::111122223333:root"
               for p in pages for g in p["Grants"])
    assert len(kms.list_grants(KeyId=key, GranteePrincipal=OTHER)["Grants"]) == 2
    one = kms.list_grants(KeyId=key, GrantId=made[0])["Grants"]
    assert [g["GrantId"] for g in one] == [made[0]]
    with pytest.raises(ClientError) as e:
        kms.list_grants(KeyId=key, Limit=101)
    assert err(e)[0] == "ValidationException"
    # ListRetirableGrants: the retiring principal's own grants.
    mine = [g for p in app.get_paginator("list_retirable_grants").paginate(
        RetiringPrincipal=APP, PaginationConfig={"PageSize": 2}) for g in p["Grants"]]
    assert set(made) <= {g["GrantId"] for g in mine}
    with pytest.raises(ClientError) as e:
        app.list_retirable_grants(RetiringPrincipal=OTHER)
    assert err(e) == ("AccessDeniedException", 400)


def test_aws_cli_creates_and_lists_grants(server):
    run = server.aws

    key_id = run("create-key")["KeyMetadata"]["KeyId"]
    g = run("create-grant", "--key-id", key_id, "--grantee-principal", APP, "--operations", "Encrypt", "Decrypt",
            "--constraints", "EncryptionContextSubset={purpose=test}")
    listed = run("list-grants", "--key-id", key_id)["Grants"]
    assert [x["GrantId"] for x in listed] == [g["GrantId"]]
    assert listed[0]["Constraints"] == {"EncryptionContextSubset": {"purpose": "test"}}
    run("revoke-grant", "--key-id", key_id, "--grant-id", g["GrantId"])
    assert run("list-grants", "--key-id", key_id)["Grants"] == []
