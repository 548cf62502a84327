"""A script written for LocalStack's single endpoint, kept as such: every client is made against one
`endpoint_url` (LocalStack's `http://localhost.localstack.cloud:4566`), credentials and region come
from the environment as boto3 finds them. The test runs it against cloister-kms with only the
endpoint changed (`ENDPOINT_URL`), to show that scripts people already have work unchanged.

It does what a new user tries first: a KMS key and an alias, Encrypt/Decrypt, a data key, then a
secret in Secrets Manager and a SecureString in Parameter Store under that key, read back.
"""
import json
import os

import boto3

ENDPOINT_URL = os.environ.get("ENDPOINT_URL", "http://localhost.localstack.cloud:4566")


def client(service):
    return boto3.client(service, endpoint_url=ENDPOINT_URL)


def main():
    kms = client("kms")
    key = kms.create_key(Description="app key")["KeyMetadata"]
    kms.create_alias(AliasName="alias/app", TargetKeyId=key["KeyId"])
    blob = kms.encrypt(KeyId="alias/app", Plaintext=b"card 4111")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"card 4111"
    data_key = kms.generate_data_key(KeyId="alias/app", KeySpec="AES_256")
    assert len(data_key["Plaintext"]) == 32

    sm = client("secretsmanager")
    created = sm.create_secret(Name="app/db", KmsKeyId="alias/app",
                               SecretString=json.dumps({"user": "app", "password": "s3cret"}))
    value = sm.get_secret_value(SecretId="app/db")
    assert json.loads(value["SecretString"])["password"] == "s3cret"
    sm.put_secret_value(SecretId=created["ARN"], SecretString=json.dumps({"user": "app", "password": "n3w"}))
    assert json.loads(sm.get_secret_value(SecretId="app/db")["SecretString"])["password"] == "n3w"
    previous = sm.get_secret_value(SecretId="app/db", VersionStage="AWSPREVIOUS")
    assert json.loads(previous["SecretString"])["password"] == "s3cret"
    names = [s["Name"] for s in sm.list_secrets()["SecretList"]]
    assert "app/db" in names

    ssm = client("ssm")
    ssm.put_parameter(Name="/app/config/url", Value="https://example.com", Type="String")
    ssm.put_parameter(Name="/app/config/token", Value="t0ken", Type="SecureString", KeyId="alias/app")
    assert ssm.get_parameter(Name="/app/config/token", WithDecryption=True)["Parameter"]["Value"] == "t0ken"
    by_path = ssm.get_parameters_by_path(Path="/app/config", WithDecryption=True)["Parameters"]
    assert {p["Name"]: p["Value"] for p in by_path} == {
        "/app/config/url": "https://example.com", "/app/config/token": "t0ken"}
    print("ok")


if __name__ == "__main__":
    main()
