"""The official Python AWS Encryption SDK and cloister read each other's messages, through
cloister-kms (AWS_ENDPOINT_URL_KMS), for both committing suites, framed and non-framed."""
import json
import os
import subprocess

import aws_encryption_sdk
import pytest
from aws_encryption_sdk.identifiers import Algorithm, CommitmentPolicy

from conftest import CLOISTER_BIN

SUITES = {
    "0x0478": Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
    "0x0578": Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
}
RECORDS = [{"id": i, "name": f"patient-{i}", "amount": i * 1.5, "country": "NZ" if i % 2 else "FR"} for i in range(300)]


@pytest.fixture(scope="module")
def env(server):
    key, secret = server.admin
    e = dict(os.environ, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION="us-east-1",
             AWS_ENDPOINT_URL_KMS=server.url, AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    os.environ.update({k: e[k] for k in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                         "AWS_ENDPOINT_URL_KMS", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"]})
    return e


@pytest.fixture(scope="module")
def key_arn(kms):
    return kms.create_key(Description="esdk interop")["KeyMetadata"]["Arn"]


def sdk():
    return aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)


def jsonl(records):
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def cloister(env, *args):
    out = subprocess.run([CLOISTER_BIN, *args], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    return out


@pytest.mark.parametrize("suite", sorted(SUITES))
@pytest.mark.parametrize("frame_length", [0, 128, 4096])
def test_cloister_opens_what_the_python_sdk_sealed(tmp_path, env, key_arn, suite, frame_length):
    provider = aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(key_ids=[key_arn])
    plaintext = jsonl(RECORDS)
    ct, _ = sdk().encrypt(source=plaintext, key_provider=provider, algorithm=SUITES[suite],
                          frame_length=frame_length, encryption_context={"tenant": "acme"})
    (tmp_path / "in.esdk").write_bytes(ct)
    cloister(env, "open", "--kms", env["AWS_ENDPOINT_URL_KMS"], str(tmp_path / "in.esdk"), "-o", str(tmp_path / "out.jsonl"))
    assert (tmp_path / "out.jsonl").read_bytes() == plaintext


@pytest.mark.parametrize("suite", sorted(SUITES))
@pytest.mark.parametrize("frame_length", [0, 100, 4096])
def test_python_sdk_opens_what_cloister_sealed(tmp_path, env, key_arn, suite, frame_length):
    (tmp_path / "in.jsonl").write_bytes(jsonl(RECORDS))
    cloister(env, "seal", "--kms", env["AWS_ENDPOINT_URL_KMS"], "--key-id", key_arn, "--context", "tenant=acme",
             "--suite", suite, "--frame-length", str(frame_length), str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.esdk"))
    provider = aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(key_ids=[key_arn])
    pt, header = sdk().decrypt(source=(tmp_path / "out.esdk").read_bytes(), key_provider=provider)
    assert pt == jsonl(RECORDS)
    assert header.encryption_context["tenant"] == "acme"
    assert header.algorithm == SUITES[suite]


def test_many_messages_share_one_data_key(tmp_path, env, key_arn, server):
    from conftest import KMS_BIN
    (tmp_path / "in.jsonl").write_bytes(jsonl(RECORDS))
    before = len(subprocess.check_output([KMS_BIN, "audit", "tail", *server.data_args(), "-n", "100000"], text=True).splitlines())
    cloister(env, "seal", "--kms", env["AWS_ENDPOINT_URL_KMS"], "--key-id", key_arn, "--records-per-message", "30",
             str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.esdk"))
    tail = subprocess.check_output([KMS_BIN, "audit", "tail", *server.data_args(), "-n", "100000"], text=True).splitlines()
    new_ops = [json.loads(line)["entry"]["operation"] for line in tail[before:]]
    assert new_ops.count("GenerateDataKey") == 1, new_ops
    cloister(env, "open", "--kms", env["AWS_ENDPOINT_URL_KMS"], str(tmp_path / "out.esdk"), "-o", str(tmp_path / "back.jsonl"))
    assert (tmp_path / "back.jsonl").read_bytes() == jsonl(RECORDS)


def test_tampered_message_is_refused_and_nothing_is_written(tmp_path, env, key_arn):
    (tmp_path / "in.jsonl").write_bytes(jsonl(RECORDS[:5]))
    cloister(env, "seal", "--kms", env["AWS_ENDPOINT_URL_KMS"], "--key-id", key_arn, str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "s.esdk"))
    data = bytearray((tmp_path / "s.esdk").read_bytes())
    data[-150] ^= 1
    (tmp_path / "s.esdk").write_bytes(bytes(data))
    out = subprocess.run([CLOISTER_BIN, "open", "--kms", env["AWS_ENDPOINT_URL_KMS"], str(tmp_path / "s.esdk"),
                          "-o", str(tmp_path / "never.jsonl")], capture_output=True, text=True, env=env)
    assert out.returncode == 1
    assert "error[ESDK-" in out.stderr, out.stderr
    assert not (tmp_path / "never.jsonl").exists()
