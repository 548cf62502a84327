"""Fixtures: a real cloister-kms process on a loopback port, and boto3 clients for it.

The module-scoped `server` runs every test module that uses it twice: once over the SQLite store
(the default), once over a PostgreSQL store (`--store postgres://...`, a fresh database in one
throwaway cluster per session, see `PgCluster`)."""
import itertools
import json
import os
import pwd
import re
import shutil
import socket
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


def pg_bin_dir():
    """PostgreSQL's server binaries ($CLOISTER_PG_BIN, else the newest /usr/lib/postgresql/N/bin)."""
    if os.environ.get("CLOISTER_PG_BIN"):
        return os.environ["CLOISTER_PG_BIN"]
    found = []
    for name in os.listdir("/usr/lib/postgresql") if os.path.isdir("/usr/lib/postgresql") else []:
        bin_dir = os.path.join("/usr/lib/postgresql", name, "bin")
        if name.isdigit() and os.path.exists(os.path.join(bin_dir, "initdb")):
            found.append((int(name), bin_dir))
    if not found:
        raise RuntimeError("PostgreSQL's server binaries are not installed (no /usr/lib/postgresql/<N>/bin/initdb): "
                           "run `source scripts/lib.sh && ensure_postgres`, or set CLOISTER_PG_BIN")
    return max(found)[1]


class PgCluster:
    """A throwaway PostgreSQL cluster in a temporary directory (as tests/src/pg.rs makes one):
    initdb with trust authentication, a server on 127.0.0.1 and a free port, its unix socket in
    the directory, fsync on. Run as the `postgres` user when the tests run as root (the server
    refuses root), else as the current user. Never a system service."""

    def __init__(self):
        self.bin = pg_bin_dir()
        self.run_as = None
        if os.geteuid() == 0:
            try:
                self.run_as = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root, and PostgreSQL refuses to: the `postgres` user "
                                   "(made by Debian's postgresql package) is needed for the test cluster")
        self.dir = tempfile.mkdtemp(prefix="cloister-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        sock = os.path.join(self.dir, "sock")
        os.mkdir(sock)
        for path in (self.dir, sock):
            self._give(path)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{sock}'\n"
                    "max_connections = 300\nshared_buffers = 32MB\nfsync = on\nlog_min_messages = warning\n")
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "120", "start")
        self.running = True
        # Stops the server and removes the directory if this process dies without close().
        as_user = f"runuser -u {self.run_as.pw_name} -- " if self.run_as else ""
        subprocess.Popen(
            ["sh", "-c", f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; "
                         f"{as_user}'{os.path.join(self.bin, 'pg_ctl')}' -D '{self.data}' -m immediate -w stop; "
                         f"rm -rf '{self.dir}'"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        self._names = itertools.count(1)

    def _give(self, path):
        if self.run_as:
            os.chown(path, self.run_as.pw_uid, self.run_as.pw_gid)

    def _run(self, name, *args, check=True):
        cmd = [os.path.join(self.bin, name), *args]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as.pw_name, "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=self.dir)
        if check and out.returncode != 0:
            log = open(self.log).read() if os.path.exists(self.log) else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}\nserver log:\n{log}")
        return out

    def url(self, db):
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def create_database(self, prefix="kms"):
        """A new, empty database; its URL."""
        name = f"{prefix}_{next(self._names)}"
        out = subprocess.run([os.path.join(self.bin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                              "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                              "-c", f"CREATE DATABASE {name}"], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"CREATE DATABASE {name} failed:\n{out.stdout}\n{out.stderr}")
        return self.url(name)

    def close(self):
        if self.running:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", check=False)
            self.running = False
        shutil.rmtree(self.dir, ignore_errors=True)


class Kms:
    """A cloister-kms server. With `store` (a postgres:// URL) its store is that database:
    `--store <url>` is passed to `credentials`, `principal add` and `serve`; the data directory
    still holds the node's own files (root key, TLS material, lock)."""

    def __init__(self, extra=(), store=None):
        self.dir = tempfile.mkdtemp(prefix="cloister-kms-")
        self.store = store
        self.admin = parse_creds(subprocess.check_output(
            [KMS_BIN, "credentials", "--data-dir", self.dir, *self.store_args()], text=True))
        self.proc = subprocess.Popen(
            [KMS_BIN, "serve", "--data-dir", self.dir, *self.store_args(), "--listen", "127.0.0.1:0", *extra],
            stderr=subprocess.PIPE, text=True)
        for line in self.proc.stderr:
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                self.url = m.group(1)
                break
        else:
            raise RuntimeError(f"cloister-kms did not start (store {self.store or 'sqlite'})")
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()

    def store_args(self):
        return ["--store", self.store] if self.store else []

    def data_args(self):
        """`--data-dir <dir>` and, over PostgreSQL, `--store <url>`: what a CLI command on this
        server's store (`audit tail`, `audit verify`, ...) needs."""
        return ["--data-dir", self.dir, *self.store_args()]

    def add_principal(self, arn):
        out = subprocess.check_output([KMS_BIN, "principal", "add", "--data-dir", self.dir, *self.store_args(),
                                       "--arn", arn], text=True)
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

    def stop(self, keep_dir=False):
        """Stops the server and, unless `keep_dir` (to start another on it), removes its data
        directory (root key, SQLite store, TLS material)."""
        self.proc.terminate()
        self.proc.wait(timeout=10)
        if not keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster():
    """One throwaway PostgreSQL cluster for the session (started when a test first needs it)."""
    cluster = PgCluster()
    yield cluster
    cluster.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request):
    """A cloister-kms for the module, over each store in turn (a fresh PostgreSQL database each)."""
    store = None
    if request.param == "postgres":
        store = request.getfixturevalue("pg_cluster").create_database()
    s = Kms(store=store)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def kms(server):
    return server.client()
