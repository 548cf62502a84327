"""Secrets Manager through aws-cli, unchanged, against the real cloister-kms binary: create-secret,
get-secret-value, put-secret-value, list-secrets, describe-secret, delete-secret and
restore-secret, and how a refusal reaches the shell (exit code 255, aws-cli v1's for a service error, and the service's message)."""
import uuid


def sm(server, *args, **kw):
    return server.aws(*args, service="secretsmanager", **kw)


def test_the_aws_cli_round_trip(server):
    name = f"cli/{uuid.uuid4().hex[:12]}"
    created = sm(server, "create-secret", "--name", name, "--secret-string", "s3cret",
                 "--description", "from the cli")
    assert created["Name"] == name and created["ARN"].startswith(
        "arn:aws:secretsmanager:us-east-1:111122223333:secret:" + name + "-")
    got = sm(server, "get-secret-value", "--secret-id", name)
    assert got["SecretString"] == "s3cret" and got["VersionStages"] == ["AWSCURRENT"]
    put = sm(server, "put-secret-value", "--secret-id", created["ARN"], "--secret-binary",
             server.file("value.bin", b"\x00\xffbin"))
    assert put["VersionStages"] == ["AWSCURRENT"]
    got = sm(server, "get-secret-value", "--secret-id", name)
    # aws-cli prints blobs as base64.
    assert got["SecretBinary"] == "AP9iaW4="
    prev = sm(server, "get-secret-value", "--secret-id", name, "--version-stage", "AWSPREVIOUS")
    assert prev["SecretString"] == "s3cret"
    described = sm(server, "describe-secret", "--secret-id", name)
    assert described["Description"] == "from the cli"
    assert sorted(described["VersionIdsToStages"].values()) == [["AWSCURRENT"], ["AWSPREVIOUS"]]
    listed = sm(server, "list-secrets", "--filters", f"Key=name,Values={name}")
    assert [s["Name"] for s in listed["SecretList"]] == [name]
    deleted = sm(server, "delete-secret", "--secret-id", name, "--recovery-window-in-days", "7")
    assert deleted["ARN"] == created["ARN"] and "DeletionDate" in deleted
    refused = sm(server, "get-secret-value", "--secret-id", name, check=False)
    assert refused.returncode == 255
    assert "InvalidRequestException" in refused.stderr and "marked for deletion" in refused.stderr
    restored = sm(server, "restore-secret", "--secret-id", name)
    assert restored["Name"] == name
    assert sm(server, "get-secret-value", "--secret-id", name)["SecretBinary"] == "AP9iaW4="


def test_a_refusal_reaches_the_shell(server):
    missing = sm(server, "describe-secret", "--secret-id", f"cli/{uuid.uuid4().hex}", check=False)
    assert missing.returncode == 255
    assert "ResourceNotFoundException" in missing.stderr
    assert "Secrets Manager can't find the specified secret." in missing.stderr
    both = sm(server, "create-secret", "--name", f"cli/{uuid.uuid4().hex[:8]}", "--secret-string", "a",
              "--secret-binary", server.file("b.bin", b"b"), check=False)
    assert both.returncode == 255 and "InvalidParameterException" in both.stderr
