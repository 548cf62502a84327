"""A script written for LocalStack's single endpoint (tests/python/scripts/localstack_demo.py) runs
unchanged against cloister-kms, with only its endpoint changed: KMS, Secrets Manager and Parameter
Store on one listener, each request signed for its own service."""
import os
import subprocess
import sys

from conftest import Kms

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts", "localstack_demo.py")


def test_a_localstack_script_runs_unchanged_with_only_the_endpoint_changed():
    server = Kms()
    try:
        key, secret = server.admin
        env = dict(os.environ, ENDPOINT_URL=server.url, AWS_ACCESS_KEY_ID=key,
                   AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION="us-east-1",
                   AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
        out = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True, env=env,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "ok"
    finally:
        server.stop()
