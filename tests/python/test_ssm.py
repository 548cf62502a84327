"""Parameter Store on cloister-kms with boto3, against the real binary: every operation's round
trip, versions and labels, Overwrite rules, paths and pagination, DescribeParameters' filters,
SecureString values stored as KMS ciphertext under {"PARAMETER_ARN": arn} (KMS Decrypt opens what
GetParameter(WithDecryption=False) returns), and each modeled error with its __type and HTTP 400."""
import base64
import json
import re
import subprocess
import threading
import urllib.request

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

ACCOUNT = "111122223333"
REGION = "us-east-1"


def err(excinfo):
    r = excinfo.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"]


def arn(name):
    return f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{name.lstrip('/')}"


@pytest.fixture(scope="module")
def ssm(server):
    return server.client(service="ssm", retries=1)


def refused(call, code, **kw):
    with pytest.raises(ClientError) as e:
        call(**kw)
    assert err(e) == (code, 400), e.value.response
    return e.value.response


def test_put_get_string_and_stringlist(ssm):
    out = ssm.put_parameter(Name="/t1/url", Value="https://example.com", Type="String",
                            Description="the url")
    assert out == {"Version": 1, "Tier": "Standard", "ResponseMetadata": out["ResponseMetadata"]}
    p = ssm.get_parameter(Name="/t1/url")["Parameter"]
    assert p["Name"] == "/t1/url" and p["Value"] == "https://example.com" and p["Type"] == "String"
    assert p["Version"] == 1 and p["ARN"] == arn("/t1/url") and p["DataType"] == "text"
    assert p["LastModifiedDate"].year >= 2024 and "Selector" not in p
    ssm.put_parameter(Name="/t1/list", Value="a,b,c", Type="StringList")
    assert ssm.get_parameter(Name="/t1/list")["Parameter"]["Type"] == "StringList"
    # The ARN names the parameter too; a top-level name with or without its slash is one parameter.
    assert ssm.get_parameter(Name=arn("/t1/url"))["Parameter"]["Value"] == "https://example.com"
    ssm.put_parameter(Name="t1top", Value="v", Type="String")
    assert ssm.get_parameter(Name="/t1top")["Parameter"]["ARN"] == arn("t1top")
    refused(ssm.put_parameter, "ParameterAlreadyExists", Name="/t1top", Value="w", Type="String")


def test_versions_overwrite_and_history(ssm):
    name = "/t2/db/host"
    for i in range(1, 4):
        v = ssm.put_parameter(Name=name, Value=f"h{i}", Type="String", Overwrite=i > 1)["Version"]
        assert v == i
    resp = refused(ssm.put_parameter, "ParameterAlreadyExists", Name=name, Value="x")
    assert "overwrite" in resp["Error"]["Message"]
    # Overwrite without Type keeps the type; the description is kept too.
    ssm.put_parameter(Name=name, Value="h4", Overwrite=True, Description="db host")
    assert ssm.get_parameter(Name=name)["Parameter"]["Version"] == 4
    p = ssm.get_parameter(Name=f"{name}:2")["Parameter"]
    assert p["Value"] == "h2" and p["Version"] == 2 and p["Selector"] == ":2"
    refused(ssm.get_parameter, "ParameterVersionNotFound", Name=f"{name}:9")
    hist = ssm.get_parameter_history(Name=name)["Parameters"]
    assert [h["Version"] for h in hist] == [1, 2, 3, 4] and [h["Value"] for h in hist][-1] == "h4"
    assert hist[-1]["Description"] == "db host" and hist[0]["Labels"] == []
    assert hist[0]["LastModifiedUser"].startswith("arn:aws:iam::")
    page = ssm.get_parameter_history(Name=name, MaxResults=3)
    assert len(page["Parameters"]) == 3
    rest = ssm.get_parameter_history(Name=name, MaxResults=3, NextToken=page["NextToken"])
    assert [h["Version"] for h in rest["Parameters"]] == [4] and "NextToken" not in rest
    refused(ssm.get_parameter_history, "ParameterNotFound", Name="/t2/none")
    refused(ssm.get_parameter_history, "InvalidNextToken", Name=name, NextToken="bogus")
    # Changing to or from SecureString is refused; String <-> StringList is not.
    refused(ssm.put_parameter, "HierarchyTypeMismatchException", Name=name, Value="s",
            Type="SecureString", Overwrite=True)
    ssm.put_parameter(Name=name, Value="a,b", Type="StringList", Overwrite=True)
    # Tags and Overwrite together are refused.
    refused(ssm.put_parameter, "ValidationException", Name=name, Value="s", Overwrite=True,
            Tags=[{"Key": "a", "Value": "b"}])
    refused(ssm.put_parameter, "ValidationException", Name="/t2/new", Value="x")  # no Type


def test_labels_move_between_versions(ssm):
    name = "/t3/feature"
    for i in range(1, 4):
        ssm.put_parameter(Name=name, Value=f"v{i}", Type="String", Overwrite=True)
    out = ssm.label_parameter_version(Name=name, ParameterVersion=1, Labels=["prod", "blue"])
    assert out["ParameterVersion"] == 1 and out["InvalidLabels"] == []
    p = ssm.get_parameter(Name=f"{name}:prod")["Parameter"]
    assert p["Value"] == "v1" and p["Selector"] == ":prod" and p["Version"] == 1
    # No version: the latest; the label moves off version 1.
    assert ssm.label_parameter_version(Name=name, Labels=["prod"])["ParameterVersion"] == 3
    assert ssm.get_parameter(Name=f"{name}:prod")["Parameter"]["Version"] == 3
    hist = {h["Version"]: h["Labels"] for h in ssm.get_parameter_history(Name=name)["Parameters"]}
    assert hist == {1: ["blue"], 2: [], 3: ["prod"]}
    bad = ssm.label_parameter_version(Name=name, ParameterVersion=2,
                                      Labels=["1st", "awsX", "ssm-y", "a b", "ok.label-1_"])
    assert sorted(bad["InvalidLabels"]) == ["1st", "a b", "awsX", "ssm-y"]
    assert "ok.label-1_" in ssm.get_parameter_history(Name=name)["Parameters"][1]["Labels"]
    refused(ssm.get_parameter, "ParameterNotFound", Name=f"{name}:nolabel")
    refused(ssm.label_parameter_version, "ParameterVersionNotFound", Name=name, ParameterVersion=7,
            Labels=["x"])
    refused(ssm.label_parameter_version, "ParameterNotFound", Name="/t3/none", Labels=["x"])
    refused(ssm.label_parameter_version, "ValidationException", Name=name, Labels=["x" * 101])
    many = [f"l{i}" for i in range(9)]
    ssm.label_parameter_version(Name=name, ParameterVersion=2, Labels=many)  # 10 with ok.label-1_
    refused(ssm.label_parameter_version, "ParameterVersionLabelLimitExceeded", Name=name,
            ParameterVersion=2, Labels=["eleventh"])
    out = ssm.unlabel_parameter_version(Name=name, ParameterVersion=3, Labels=["prod", "nope"])
    assert out["RemovedLabels"] == ["prod"] and out["InvalidLabels"] == ["nope"]
    refused(ssm.get_parameter, "ParameterNotFound", Name=f"{name}:prod")
    refused(ssm.unlabel_parameter_version, "ParameterVersionNotFound", Name=name,
            ParameterVersion=9, Labels=["x"])
    refused(ssm.unlabel_parameter_version, "ParameterNotFound", Name="/t3/none",
            ParameterVersion=1, Labels=["x"])


def test_at_most_100_versions_unless_the_oldest_is_labelled(ssm):
    name = "/t4/counter"
    ssm.put_parameter(Name=name, Value="1", Type="String")
    ssm.label_parameter_version(Name=name, ParameterVersion=1, Labels=["first"])
    for i in range(2, 101):
        ssm.put_parameter(Name=name, Value=str(i), Overwrite=True)
    refused(ssm.put_parameter, "ParameterMaxVersionLimitExceeded", Name=name, Value="101",
            Overwrite=True)
    ssm.unlabel_parameter_version(Name=name, ParameterVersion=1, Labels=["first"])
    assert ssm.put_parameter(Name=name, Value="101", Overwrite=True)["Version"] == 101
    refused(ssm.get_parameter, "ParameterVersionNotFound", Name=f"{name}:1")
    assert ssm.get_parameter(Name=f"{name}:2")["Parameter"]["Value"] == "2"
    hist = ssm.get_parameter_history(Name=name)
    assert hist["Parameters"][0]["Version"] == 2 and len(hist["Parameters"]) == 50


def test_get_parameters_and_delete(ssm):
    for n in ("a", "b", "c"):
        ssm.put_parameter(Name=f"/t5/{n}", Value=n.upper(), Type="String")
    out = ssm.get_parameters(Names=["/t5/a", "/t5/b:1", "/t5/zz", "/t5/a:7", "/t5/c"])
    assert [p["Value"] for p in out["Parameters"]] == ["A", "B", "C"]
    assert out["Parameters"][1]["Selector"] == ":1"
    assert sorted(out["InvalidParameters"]) == ["/t5/a:7", "/t5/zz"]
    refused(ssm.get_parameters, "ValidationException", Names=[f"/n{i}" for i in range(11)])
    ssm.delete_parameter(Name="/t5/a")
    refused(ssm.get_parameter, "ParameterNotFound", Name="/t5/a")
    refused(ssm.delete_parameter, "ParameterNotFound", Name="/t5/a")
    out = ssm.delete_parameters(Names=["/t5/b", "/t5/a", "/t5/c"])
    assert out["DeletedParameters"] == ["/t5/b", "/t5/c"] and out["InvalidParameters"] == ["/t5/a"]
    assert ssm.get_parameters(Names=["/t5/b", "/t5/c"])["Parameters"] == []
    # A deleted name starts again at version 1.
    assert ssm.put_parameter(Name="/t5/a", Value="again", Type="String")["Version"] == 1


def test_get_parameters_by_path_levels_filters_and_pages(ssm):
    names = ["/t6/x", "/t6/y", "/t6/sub/z", "/t6/sub/deeper/w", "/t6other/q"]
    for n in names:
        ssm.put_parameter(Name=n, Value=n, Type="String")
    ssm.put_parameter(Name="/t6/s", Value="secret", Type="SecureString")
    one = ssm.get_parameters_by_path(Path="/t6")["Parameters"]
    assert sorted(p["Name"] for p in one) == ["/t6/s", "/t6/x", "/t6/y"]
    deep = ssm.get_parameters_by_path(Path="/t6/", Recursive=True)["Parameters"]
    assert sorted(p["Name"] for p in deep) == ["/t6/s", "/t6/sub/deeper/w", "/t6/sub/z", "/t6/x", "/t6/y"]
    typed = ssm.get_parameters_by_path(Path="/t6", Recursive=True, ParameterFilters=[
        {"Key": "Type", "Values": ["SecureString"]}])["Parameters"]
    assert [p["Name"] for p in typed] == ["/t6/s"] and typed[0]["Value"] != "secret"
    ssm.label_parameter_version(Name="/t6/x", Labels=["golden"])
    labelled = ssm.get_parameters_by_path(Path="/t6", Recursive=True, ParameterFilters=[
        {"Key": "Label", "Values": ["golden"], "Option": "Equals"}])["Parameters"]
    assert [p["Name"] for p in labelled] == ["/t6/x"]
    # Pages of 2 through every parameter under /t6, each once.
    seen, token, pages = [], None, 0
    while True:
        kw = {"NextToken": token} if token else {}
        page = ssm.get_parameters_by_path(Path="/t6", Recursive=True, MaxResults=2, **kw)
        assert len(page["Parameters"]) <= 2
        seen += [p["Name"] for p in page["Parameters"]]
        pages += 1
        token = page.get("NextToken")
        if not token:
            break
    assert pages == 3 and sorted(seen) == sorted(p["Name"] for p in deep)
    paginated = [p["Name"] for pg in ssm.get_paginator("get_parameters_by_path").paginate(
        Path="/t6", Recursive=True, PaginationConfig={"PageSize": 2}) for p in pg["Parameters"]]
    assert sorted(paginated) == sorted(seen)
    refused(ssm.get_parameters_by_path, "InvalidNextToken", Path="/t6", NextToken="AAAA")
    refused(ssm.get_parameters_by_path, "ValidationException", Path="/t6", MaxResults=11)
    refused(ssm.get_parameters_by_path, "ValidationException", Path="t6")
    refused(ssm.get_parameters_by_path, "InvalidFilterKey", Path="/t6",
            ParameterFilters=[{"Key": "Name", "Values": ["x"]}])
    refused(ssm.get_parameters_by_path, "InvalidFilterOption", Path="/t6",
            ParameterFilters=[{"Key": "Label", "Option": "BeginsWith", "Values": ["x"]}])
    refused(ssm.get_parameters_by_path, "InvalidFilterValue", Path="/t6",
            ParameterFilters=[{"Key": "Type", "Values": ["Nope"]}])


def test_describe_parameters_filters(ssm, kms):
    key = kms.create_key()["KeyMetadata"]
    ssm.put_parameter(Name="/t7/app/a", Value="1", Type="String", Tags=[{"Key": "env", "Value": "prod"}])
    ssm.put_parameter(Name="/t7/app/b", Value="2", Type="SecureString", KeyId=key["KeyId"],
                      Description="b", AllowedPattern=r"^\d+$")
    ssm.put_parameter(Name="/t7/app/deep/c", Value="3", Type="StringList", Tier="Advanced")

    def names(**kw):
        out = []
        for page in ssm.get_paginator("describe_parameters").paginate(**kw):
            out += [p["Name"] for p in page["Parameters"]]
        return sorted(n for n in out if n.startswith("/t7/"))

    assert names() == ["/t7/app/a", "/t7/app/b", "/t7/app/deep/c"]
    assert names(ParameterFilters=[{"Key": "Name", "Option": "BeginsWith", "Values": ["/t7/app/d"]}]) == ["/t7/app/deep/c"]
    assert names(ParameterFilters=[{"Key": "Name", "Values": ["/t7/app/a"]}]) == ["/t7/app/a"]
    assert names(ParameterFilters=[{"Key": "Type", "Values": ["SecureString"]}]) == ["/t7/app/b"]
    assert names(ParameterFilters=[{"Key": "KeyId", "Values": [key["KeyId"]]}]) == ["/t7/app/b"]
    assert names(ParameterFilters=[{"Key": "Path", "Values": ["/t7/app"]}]) == ["/t7/app/a", "/t7/app/b"]
    assert names(ParameterFilters=[{"Key": "Path", "Option": "Recursive", "Values": ["/t7"]}]) == [
        "/t7/app/a", "/t7/app/b", "/t7/app/deep/c"]
    assert names(ParameterFilters=[{"Key": "Tier", "Values": ["Advanced"]}]) == ["/t7/app/deep/c"]
    assert names(ParameterFilters=[{"Key": "tag:env", "Values": ["prod"]}]) == ["/t7/app/a"]
    assert names(Filters=[{"Key": "Name", "Values": ["/t7/app/b"]}]) == ["/t7/app/b"]
    assert names(Filters=[{"Key": "Type", "Values": ["StringList"]}]) == ["/t7/app/deep/c"]
    meta = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": ["/t7/app/b"]}])["Parameters"][0]
    assert meta["ARN"] == arn("/t7/app/b") and meta["KeyId"] == key["KeyId"]
    assert meta["Tier"] == "Standard" and meta["DataType"] == "text" and meta["Version"] == 1
    assert meta["Description"] == "b" and meta["AllowedPattern"] == r"^\d+$" and "Value" not in meta
    first = ssm.describe_parameters(MaxResults=1)
    assert len(first["Parameters"]) == 1 and first["NextToken"]
    refused(ssm.describe_parameters, "ValidationException", MaxResults=51)
    refused(ssm.describe_parameters, "ValidationException", Filters=[{"Key": "Name", "Values": ["a"]}],
            ParameterFilters=[{"Key": "Name", "Values": ["a"]}])
    refused(ssm.describe_parameters, "InvalidFilterKey", ParameterFilters=[{"Key": "Label", "Values": ["a"]}])
    refused(ssm.describe_parameters, "InvalidFilterOption",
            ParameterFilters=[{"Key": "Path", "Option": "Equals", "Values": ["/t7"]}])
    refused(ssm.describe_parameters, "InvalidFilterValue", ParameterFilters=[{"Key": "Tier", "Values": ["Gold"]}])
    refused(ssm.describe_parameters, "InvalidNextToken", NextToken="nope")


def test_tags(ssm):
    ssm.put_parameter(Name="/t8/p", Value="v", Type="String", Tags=[{"Key": "a", "Value": "1"}])
    ssm.add_tags_to_resource(ResourceType="Parameter", ResourceId="/t8/p",
                             Tags=[{"Key": "b", "Value": "2"}, {"Key": "a", "Value": "3"}])
    tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId="/t8/p")["TagList"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("a", "3"), ("b", "2")]
    ssm.remove_tags_from_resource(ResourceType="Parameter", ResourceId="/t8/p", TagKeys=["a"])
    assert ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId="/t8/p")["TagList"] == [
        {"Key": "b", "Value": "2"}]
    refused(ssm.list_tags_for_resource, "InvalidResourceId", ResourceType="Parameter", ResourceId="/t8/none")
    refused(ssm.list_tags_for_resource, "InvalidResourceType", ResourceType="Document", ResourceId="/t8/p")
    refused(ssm.add_tags_to_resource, "TooManyTagsError", ResourceType="Parameter", ResourceId="/t8/p",
            Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)])
    assert len(ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId="/t8/p")["TagList"]) == 1


def test_value_type_tier_and_name_rules(ssm):
    refused(ssm.put_parameter, "ParameterPatternMismatchException", Name="/t9/n", Value="12a",
            Type="String", AllowedPattern=r"^\d+$")
    refused(ssm.put_parameter, "InvalidAllowedPatternException", Name="/t9/n", Value="1",
            Type="String", AllowedPattern="(")
    ssm.put_parameter(Name="/t9/n", Value="12", Type="String", AllowedPattern=r"^\d+$")
    # The pattern stays with the parameter.
    refused(ssm.put_parameter, "ParameterPatternMismatchException", Name="/t9/n", Value="x", Overwrite=True)
    refused(ssm.put_parameter, "ValidationException", Name="/t9/big", Value="x" * 4097, Type="String")
    assert ssm.put_parameter(Name="/t9/big", Value="x" * 4097, Type="String",
                             Tier="Intelligent-Tiering")["Tier"] == "Advanced"
    refused(ssm.put_parameter, "ValidationException", Name="/t9/big", Value="x", Tier="Standard",
            Overwrite=True)
    refused(ssm.put_parameter, "ValidationException", Name="/t9/huge", Value="x" * 8193, Type="String",
            Tier="Advanced")
    refused(ssm.put_parameter, "HierarchyLevelLimitExceededException", Name="/l" * 16, Value="x", Type="String")
    refused(ssm.put_parameter, "ValidationException", Name="/t9/bad name", Value="x", Type="String")
    refused(ssm.get_parameter, "ValidationException", Name="/t9/bad name")
    refused(ssm.delete_parameter, "ValidationException", Name="/t9/bad name")
    # Spaces around a name are trimmed, as AWS does.
    assert ssm.put_parameter(Name=" /t9/trimmed ", Value="x", Type="String")["Version"] == 1
    assert ssm.get_parameter(Name="/t9/trimmed")["Parameter"]["Name"] == "/t9/trimmed"
    refused(ssm.put_parameter, "ValidationException", Name="t9/relative", Value="x", Type="String")
    refused(ssm.put_parameter, "ValidationException", Name="ssm-reserved", Value="x", Type="String")
    refused(ssm.put_parameter, "AccessDeniedException", Name="/aws/reserved/x", Value="x", Type="String")
    refused(ssm.put_parameter, "ValidationException", Name="/t9/t", Value="x", Type="Number")
    refused(ssm.put_parameter, "UnsupportedParameterType", Name="/t9/ami", Value="ami-12345678",
            Type="StringList", DataType="aws:ec2:image")
    refused(ssm.put_parameter, "ValidationException", Name="/t9/dt", Value="x", Type="String", DataType="TEXT")
    ok = ssm.put_parameter(Name="/t9/ami", Value="ami-12345678", Type="String", DataType="aws:ec2:image")
    assert ok["Version"] == 1
    assert ssm.get_parameter(Name="/t9/ami")["Parameter"]["DataType"] == "aws:ec2:image"
    refused(ssm.put_parameter, "ValidationException", Name="/t9/k", Value="x", Type="String", KeyId="alias/x")
    refused(ssm.put_parameter, "TooManyTagsError", Name="/t9/tags", Value="x", Type="String",
            Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(51)])
    # Nothing of the refused requests was written.
    for n in ("/t9/huge", "/t9/tags", "/t9/k", "/t9/dt", "/t9/t"):
        refused(ssm.get_parameter, "ParameterNotFound", Name=n)
    assert ssm.get_parameter(Name="/t9/n")["Parameter"]["Version"] == 1


def test_securestring_is_a_kms_ciphertext_under_the_parameter_arn(ssm, kms):
    key = kms.create_key()["KeyMetadata"]
    name = "/t10/db/password"
    assert ssm.put_parameter(Name=name, Value="hunter2", Type="SecureString", KeyId=key["KeyId"])["Version"] == 1
    p = ssm.get_parameter(Name=name)["Parameter"]
    assert p["Type"] == "SecureString" and p["Value"] != "hunter2"
    blob = base64.b64decode(p["Value"])
    out = kms.decrypt(CiphertextBlob=blob, EncryptionContext={"PARAMETER_ARN": arn(name)})
    assert out["Plaintext"] == b"hunter2" and out["KeyId"] == key["Arn"]
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"PARAMETER_ARN": arn("/t10/other")})
    assert err(e) == ("InvalidCiphertextException", 400)
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=blob)
    assert err(e)[0] == "InvalidCiphertextException"
    assert ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"] == "hunter2"
    # Overwrite: a new ciphertext, each version opens to its own value.
    ssm.put_parameter(Name=name, Value="correct horse", Overwrite=True)
    hist = ssm.get_parameter_history(Name=name, WithDecryption=True)["Parameters"]
    assert [h["Value"] for h in hist] == ["hunter2", "correct horse"]
    assert hist[0]["KeyId"] == key["KeyId"]
    many = ssm.get_parameters(Names=[name, f"{name}:1"], WithDecryption=True)["Parameters"]
    assert [m["Value"] for m in many] == ["correct horse", "hunter2"]
    by_path = ssm.get_parameters_by_path(Path="/t10/db", WithDecryption=True)["Parameters"]
    assert by_path[0]["Value"] == "correct horse"


def test_securestrings_stop_at_4096_bytes_in_either_tier(ssm, kms):
    """AWS envelope-encrypts larger Advanced SecureStrings with the Encryption SDK; cloister keeps
    every SecureString as one KMS ciphertext that KMS Decrypt opens, so it refuses them (a
    documented difference). Advanced String values still reach 8192 bytes."""
    resp = refused(ssm.put_parameter, "ValidationException", Name="/t17/big", Value="x" * 4097,
                   Type="SecureString", Tier="Advanced")
    assert "4096" in resp["Error"]["Message"]
    refused(ssm.get_parameter, "ParameterNotFound", Name="/t17/big")
    top = "y" * 4096
    ssm.put_parameter(Name="/t17/edge", Value=top, Type="SecureString", Tier="Advanced")
    assert ssm.get_parameter(Name="/t17/edge", WithDecryption=True)["Parameter"]["Value"] == top
    ssm.put_parameter(Name="/t17/text", Value="z" * 8192, Type="String", Tier="Advanced")
    assert len(ssm.get_parameter(Name="/t17/text")["Parameter"]["Value"]) == 8192


def test_securestring_under_the_aws_managed_key(ssm, kms):
    name = "/t10/managed"
    ssm.put_parameter(Name=name, Value="m4naged", Type="SecureString")
    assert ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"] == "m4naged"
    # The AWS managed key aws/ssm was made for it; as in AWS, its policy allows use through
    # Parameter Store only, so even the admin's direct Decrypt is refused.
    aliases = {a["AliasName"]: a for a in kms.list_aliases()["Aliases"]}
    managed = kms.describe_key(KeyId=aliases["alias/aws/ssm"]["TargetKeyId"])["KeyMetadata"]
    assert managed["Description"] == "Default key that protects my SSM Parameter Store data when no other key is defined"
    blob = base64.b64decode(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"PARAMETER_ARN": arn(name)})
    assert err(e)[0] == "AccessDeniedException" and managed["Arn"] in str(e.value)
    meta = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [name]}])["Parameters"][0]
    assert meta["KeyId"] == "alias/aws/ssm"
    under_managed = [m["Name"] for m in ssm.describe_parameters(ParameterFilters=[
        {"Key": "KeyId", "Values": [managed["KeyId"]]}])["Parameters"]]
    assert name in under_managed and "/t10/db/password" not in under_managed
    # Naming the managed key by its alias is the same key.
    ssm.put_parameter(Name="/t10/managed2", Value="x", Type="SecureString", KeyId="alias/aws/ssm")
    assert ssm.get_parameter(Name="/t10/managed2", WithDecryption=True)["Parameter"]["Value"] == "x"


def test_securestring_under_a_customer_managed_key(ssm, kms):
    key = kms.create_key(Description="params")["KeyMetadata"]
    kms.create_alias(AliasName="alias/t11", TargetKeyId=key["KeyId"])
    for n, kid in (("/t11/by-id", key["KeyId"]), ("/t11/by-arn", key["Arn"]), ("/t11/by-alias", "alias/t11")):
        ssm.put_parameter(Name=n, Value=f"v{n}", Type="SecureString", KeyId=kid)
        blob = base64.b64decode(ssm.get_parameter(Name=n)["Parameter"]["Value"])
        out = kms.decrypt(CiphertextBlob=blob, EncryptionContext={"PARAMETER_ARN": arn(n)})
        assert out["KeyId"] == key["Arn"] and out["Plaintext"] == f"v{n}".encode()
    # An overwrite without KeyId stays under the parameter's key.
    ssm.put_parameter(Name="/t11/by-id", Value="w", Overwrite=True)
    blob = base64.b64decode(ssm.get_parameter(Name="/t11/by-id")["Parameter"]["Value"])
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"PARAMETER_ARN": arn("/t11/by-id")})["KeyId"] == key["Arn"]
    # Disabling the key: the ciphertext is still returned, decryption is InvalidKeyId.
    kms.disable_key(KeyId=key["KeyId"])
    assert ssm.get_parameter(Name="/t11/by-id")["Parameter"]["Value"]
    refused(ssm.get_parameter, "InvalidKeyId", Name="/t11/by-id", WithDecryption=True)
    refused(ssm.put_parameter, "InvalidKeyId", Name="/t11/new", Value="x", Type="SecureString",
            KeyId=key["KeyId"])
    kms.enable_key(KeyId=key["KeyId"])
    assert ssm.get_parameter(Name="/t11/by-id", WithDecryption=True)["Parameter"]["Value"] == "w"


def test_invalid_key_ids(ssm, kms):
    refused(ssm.put_parameter, "InvalidKeyId", Name="/t12/a", Value="x", Type="SecureString",
            KeyId="alias/does-not-exist")
    refused(ssm.put_parameter, "InvalidKeyId", Name="/t12/a", Value="x", Type="SecureString",
            KeyId="1234abcd-12ab-34cd-56ef-1234567890ab")
    rsa = kms.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]
    refused(ssm.put_parameter, "InvalidKeyId", Name="/t12/a", Value="x", Type="SecureString",
            KeyId=rsa["KeyId"])
    hmac = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]
    refused(ssm.put_parameter, "InvalidKeyId", Name="/t12/a", Value="x", Type="SecureString",
            KeyId=hmac["KeyId"])
    refused(ssm.put_parameter, "ValidationException", Name="/t12/a", Value="x", Type="SecureString",
            KeyId="bad key!")
    refused(ssm.get_parameter, "ParameterNotFound", Name="/t12/a")


def test_a_key_policy_refusing_the_caller_is_access_denied(server, ssm, kms):
    role = "arn:aws:iam::111122223333:role/t13-app"
    app = server.client(server.add_principal(role), service="ssm", retries=1)
    key = kms.create_key()["KeyMetadata"]
    resp = refused(app.put_parameter, "AccessDeniedException", Name="/t13/p", Value="x",
                   Type="SecureString", KeyId=key["KeyId"])
    assert resp["Error"]["Message"] == "Access to KMS is not allowed"
    ssm.put_parameter(Name="/t13/p", Value="x", Type="SecureString", KeyId=key["KeyId"])
    # The app reads the ciphertext but may not decrypt it.
    assert app.get_parameter(Name="/t13/p")["Parameter"]["Value"]
    refused(app.get_parameter, "AccessDeniedException", Name="/t13/p", WithDecryption=True)
    # Through the managed key, every principal of the account may, through Parameter Store only.
    app.put_parameter(Name="/t13/managed", Value="m", Type="SecureString")
    assert app.get_parameter(Name="/t13/managed", WithDecryption=True)["Parameter"]["Value"] == "m"
    blob = base64.b64decode(app.get_parameter(Name="/t13/managed")["Parameter"]["Value"])
    app_kms = server.client(server.add_principal("arn:aws:iam::111122223333:role/t13-direct"), retries=1)
    with pytest.raises(ClientError) as e:
        app_kms.decrypt(CiphertextBlob=blob, EncryptionContext={"PARAMETER_ARN": arn("/t13/managed")})
    assert err(e)[0] == "AccessDeniedException"


def test_an_enclave_only_key_refuses_plain_reads(ssm, kms):
    """A key policy that allows Decrypt only with an attestation condition: GetParameter with
    WithDecryption is refused as AWS refuses it, the ciphertext is still returned without it, and
    the admin's own Decrypt of that ciphertext (no attestation document) is refused too."""
    root = f"arn:aws:iam::{ACCOUNT}:root"
    policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": root}, "Resource": "*",
         "Action": ["kms:Encrypt", "kms:DescribeKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy",
                    "kms:CreateAlias", "kms:ScheduleKeyDeletion"]},
        {"Sid": "EnclaveOnly", "Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:Decrypt",
         "Resource": "*", "Condition": {"StringEqualsIgnoreCase": {
             "kms:RecipientAttestation:ImageSha384": "00" * 48}}}]}
    key = kms.create_key(Policy=json.dumps(policy))["KeyMetadata"]
    name = "/t14/enclave/token"
    ssm.put_parameter(Name=name, Value="for-enclaves-only", Type="SecureString", KeyId=key["Arn"])
    resp = refused(ssm.get_parameter, "AccessDeniedException", Name=name, WithDecryption=True)
    assert resp["Error"]["Message"] == "Access to KMS is not allowed"
    refused(ssm.get_parameters_by_path, "AccessDeniedException", Path="/t14/enclave", WithDecryption=True)
    ct = ssm.get_parameter(Name=name, WithDecryption=False)["Parameter"]["Value"]
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=base64.b64decode(ct), EncryptionContext={"PARAMETER_ARN": arn(name)})
    assert err(e) == ("AccessDeniedException", 400)


def test_modeled_errors_carry_their_message_member(server, ssm):
    # ParameterNotFound's shape names its message `message`; InvalidNextToken's `Message`;
    # InvalidResourceId has none. The raw bodies show it.
    def raw(target, body, service="ssm"):
        creds = Credentials(*server.admin)
        req = AWSRequest(method="POST", url=server.url + "/", data=json.dumps(body).encode(),
                         headers={"X-Amz-Target": f"AmazonSSM.{target}",
                                  "Content-Type": "application/x-amz-json-1.1"})
        SigV4Auth(creds, service, REGION).add_auth(req)
        r = urllib.request.Request(req.url, data=req.body, headers=dict(req.headers), method="POST")
        try:
            with urllib.request.urlopen(r) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    status, body = raw("GetParameter", {"Name": "/nothing/here"})
    assert status == 400 and body["__type"] == "ParameterNotFound" and "message" in body
    status, body = raw("DescribeParameters", {"NextToken": "x"})
    assert status == 400 and body["__type"] == "InvalidNextToken" and "Message" in body
    status, body = raw("ListTagsForResource", {"ResourceType": "Parameter", "ResourceId": "/none"})
    assert status == 400 and body == {"__type": "InvalidResourceId"}
    # An SSM request signed for the KMS is refused, before anything is read.
    status, body = raw("GetParameter", {"Name": "/t1/url"}, service="kms")
    assert status == 400 and body["__type"] == "InvalidSignatureException"
    status, body = raw("NoSuchOperation", {})
    assert status == 400 and body["__type"] == "UnknownOperationException"
    status, body = raw("DeleteParameters", {"Names": []})
    assert status == 400 and body["__type"] == "ValidationException"
    status, body = raw("PutParameter", {"Name": 5, "Value": "x"})
    assert status == 400 and body["__type"] == "SerializationException"


def audit_tail(server, n=200):
    from conftest import KMS_BIN
    out = subprocess.check_output([KMS_BIN, "audit", "tail", *server.data_args(), "-n", str(n)], text=True)
    return [json.loads(line)["entry"] for line in out.splitlines()]


def test_requests_naming_a_parameter_are_audited_with_it(server, ssm, kms):
    key = kms.create_key()["KeyMetadata"]
    name = "/t15/audited"
    ssm.put_parameter(Name=name, Value="v1", Type="SecureString", KeyId=key["KeyId"])
    ssm.put_parameter(Name=name, Value="v2", Overwrite=True)
    ssm.get_parameter(Name=f"{name}:1", WithDecryption=True)
    with pytest.raises(ClientError):
        ssm.get_parameter(Name="/t15/missing")
    entries = [e for e in audit_tail(server) if e.get("resource_arn", "").startswith(arn("/t15/"))]
    ops = [(e["operation"], e.get("resource_version"), e["outcome"]) for e in entries]
    assert ops == [("ssm:PutParameter", "1", "ok"), ("ssm:PutParameter", "2", "ok"),
                   ("ssm:GetParameter", "1", "ok"), ("ssm:GetParameter", None, "error")]
    assert entries[2]["encryption_context"] == {"PARAMETER_ARN": arn(name)}
    assert entries[0]["resource_arn"] == arn(name)


def test_parameters_survive_a_restart():
    from conftest import Kms, KMS_BIN
    first = Kms()
    try:
        ssm = first.client(service="ssm", retries=1)
        ssm.put_parameter(Name="/t16/kept", Value="plain", Type="String", Tags=[{"Key": "k", "Value": "v"}])
        ssm.put_parameter(Name="/t16/kept", Value="plain2", Overwrite=True)
        ssm.label_parameter_version(Name="/t16/kept", ParameterVersion=1, Labels=["old"])
        ssm.put_parameter(Name="/t16/secret", Value="s", Type="SecureString")
    finally:
        first.stop(keep_dir=True)
    second = Kms.__new__(Kms)
    second.dir, second.admin = first.dir, first.admin
    second.proc = subprocess.Popen([KMS_BIN, "serve", "--data-dir", second.dir, "--listen", "127.0.0.1:0"],
                                   stderr=subprocess.PIPE, text=True)
    try:
        for line in second.proc.stderr:
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                second.url = m.group(1)
                break
        threading.Thread(target=lambda: [None for _ in second.proc.stderr], daemon=True).start()
        ssm = second.client(service="ssm", retries=1)
        assert ssm.get_parameter(Name="/t16/kept:old")["Parameter"]["Value"] == "plain"
        assert ssm.get_parameter(Name="/t16/kept")["Parameter"]["Version"] == 2
        assert ssm.get_parameter(Name="/t16/secret", WithDecryption=True)["Parameter"]["Value"] == "s"
        assert ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId="/t16/kept")["TagList"] == [
            {"Key": "k", "Value": "v"}]
    finally:
        second.stop()
