"""Parameter Store with aws-cli (`aws ssm ...`) against the real binary: put-parameter,
get-parameter with and without --with-decryption (the ciphertext opened by `aws kms decrypt` under
{"PARAMETER_ARN": arn}), get-parameters-by-path, label-parameter-version, delete-parameter, and a
refusal as aws-cli reports it."""
import base64

ARN = "arn:aws:ssm:us-east-1:111122223333:parameter/"


def ssm(server, *args, **kw):
    return server.aws(*args, service="ssm", **kw)


def test_aws_cli_round_trip(server):
    key = server.aws("create-key")["KeyMetadata"]
    out = ssm(server, "put-parameter", "--name", "/cli/db/password", "--value", "s3cret",
              "--type", "SecureString", "--key-id", key["KeyId"])
    assert out["Version"] == 1 and out["Tier"] == "Standard"
    ssm(server, "put-parameter", "--name", "/cli/db/host", "--value", "db.internal", "--type", "String")
    ssm(server, "put-parameter", "--name", "/cli/db/pool/size", "--value", "8", "--type", "String")

    plain = ssm(server, "get-parameter", "--name", "/cli/db/password", "--with-decryption")["Parameter"]
    assert plain["Value"] == "s3cret" and plain["ARN"] == ARN + "cli/db/password"
    sealed = ssm(server, "get-parameter", "--name", "/cli/db/password")["Parameter"]["Value"]
    assert sealed != "s3cret"
    blob = server.file("param.bin", base64.b64decode(sealed))
    opened = server.aws("decrypt", "--ciphertext-blob", blob, "--encryption-context",
                        f"PARAMETER_ARN={ARN}cli/db/password")
    assert base64.b64decode(opened["Plaintext"]) == b"s3cret" and opened["KeyId"] == key["Arn"]

    one = ssm(server, "get-parameters-by-path", "--path", "/cli/db")["Parameters"]
    assert sorted(p["Name"] for p in one) == ["/cli/db/host", "/cli/db/password"]
    everything = ssm(server, "get-parameters-by-path", "--path", "/cli", "--recursive",
                     "--with-decryption")["Parameters"]
    values = {p["Name"]: p["Value"] for p in everything}
    assert values == {"/cli/db/host": "db.internal", "/cli/db/password": "s3cret", "/cli/db/pool/size": "8"}
    # aws-cli follows NextToken itself: pages of one still give every parameter.
    paged = ssm(server, "get-parameters-by-path", "--path", "/cli", "--recursive", "--page-size", "1")
    assert len(paged["Parameters"]) == 3

    ssm(server, "put-parameter", "--name", "/cli/db/host", "--value", "db2.internal", "--overwrite")
    out = ssm(server, "label-parameter-version", "--name", "/cli/db/host", "--parameter-version", "1",
              "--labels", "stable")
    assert out["ParameterVersion"] == 1 and out["InvalidLabels"] == []
    assert ssm(server, "get-parameter", "--name", "/cli/db/host:stable")["Parameter"]["Value"] == "db.internal"
    assert ssm(server, "get-parameter", "--name", "/cli/db/host")["Parameter"]["Value"] == "db2.internal"

    assert ssm(server, "delete-parameter", "--name", "/cli/db/host") == {}
    gone = ssm(server, "get-parameter", "--name", "/cli/db/host", check=False)
    assert gone.returncode != 0 and "ParameterNotFound" in gone.stderr


def test_aws_cli_refusals(server):
    ssm(server, "put-parameter", "--name", "/cli2/x", "--value", "1", "--type", "String")
    again = ssm(server, "put-parameter", "--name", "/cli2/x", "--value", "2", "--type", "String", check=False)
    assert again.returncode != 0 and "ParameterAlreadyExists" in again.stderr
    bad_key = ssm(server, "put-parameter", "--name", "/cli2/s", "--value", "v", "--type", "SecureString",
                  "--key-id", "alias/none", check=False)
    assert bad_key.returncode != 0 and "InvalidKeyId" in bad_key.stderr
    # The refused writes changed nothing.
    assert ssm(server, "get-parameter", "--name", "/cli2/x")["Parameter"]["Version"] == 1
    missing = ssm(server, "get-parameter", "--name", "/cli2/s", check=False)
    assert "ParameterNotFound" in missing.stderr
