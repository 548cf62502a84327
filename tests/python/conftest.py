"""Fixtures: a real cloister-kms process on a loopback port, and boto3 clients for it."""
import json
import os
import re
import subprocess
import sys
import tempfile
import threading

import boto3
import pytest
from botocore.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN_DIR = os.environ.get("CLOISTER_BIN_DIR", os.path.join(ROOT, "target", "debug"))
KMS_BIN = os.path.join(BIN_DIR, "cloister-kms")
CLOISTER_BIN = os.path.join(BIN_DIR, "cloister")


def parse_creds(text):
    env = dict(line.split("=", 1) for line in text.strip().splitlines())
    return env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]


class Kms:
    def __init__(self, extra=()):
        self.dir = tempfile.mkdtemp(prefix="cloister-kms-")
        self.admin = parse_creds(subprocess.check_output([KMS_BIN, "credentials", "--data-dir", self.dir], text=True))
        self.proc = subprocess.Popen(
            [KMS_BIN, "serve", "--data-dir", self.dir, "--listen", "127.0.0.1:0", *extra],
            stderr=subprocess.PIPE, text=True)
        for line in self.proc.stderr:
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                self.url = m.group(1)
                break
        else:
            raise RuntimeError("cloister-kms did not start")
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()

    def add_principal(self, arn):
        out = subprocess.check_output([KMS_BIN, "principal", "add", "--data-dir", self.dir, "--arn", arn], text=True)
        return parse_creds(out)

    def client(self, creds=None, region="us-east-1", retries=3, service="kms", **kw):
        """A boto3 client of `service` (kms, secretsmanager, ssm): one endpoint serves all three."""
        key, secret = creds or self.admin
        return boto3.client(
            service, endpoint_url=self.url, region_name=region,
            aws_access_key_id=key, aws_secret_access_key=secret,
            config=Config(retries={"total_max_attempts": retries, "mode": "standard"}, **kw))

    def aws(self, *args, region="us-east-1", creds=None, service="kms", check=True):
        """`aws <service> <args> --region <region>` (aws-cli from the venv running the tests)
        against this server, with no configuration file; the answer's JSON ({} when empty). With
        check=False, the finished process instead (to look at a refusal)."""
        key, secret = creds or self.admin
        env = dict(os.environ, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret,
                   AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
        env.pop("AWS_DEFAULT_REGION", None)
        aws = os.path.join(os.path.dirname(sys.executable), "aws")
        out = subprocess.run([aws, service, *args, "--region", region, "--endpoint-url", self.url,
                              "--output", "json"], capture_output=True, text=True, env=env)
        if not check:
            return out
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else {}

    def file(self, name, data):
        """`fileb://<path>` of a file holding `data` (aws-cli v1 reads binary arguments so)."""
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return "fileb://" + path

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server():
    s = Kms()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def kms(server):
    return server.client()
