"""An S3 prefix as a source: object keys relative to the prefix, fed by S3 event notifications on SQS.

Keys look like the folder's (``guide/intro.md``) and only keys with a supported suffix belong to the
source; an object's bytes become documents through ``records.parse``, and its ETag (with its reader's
version, ``records.versioned``) is its version.

With a queue, ``changes`` turns S3 event notifications into keys to re-read. Events are unordered and
delivered at least once, so an event only says "this key may have changed": the read decides, and a
deleted key reads None. Messages are deleted only in ``acknowledge``, once the batch is recorded, so a
crash before that lets them reappear after the queue's visibility timeout. Anything the queue misses
(a misconfigured notification, a purged queue) is caught by the periodic listing reconcile.

Clients come from boto3 and the standard AWS chain: boto3 itself reads the endpoint
(``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL_SQS``) and the credentials; only
``AWS_REGION`` is passed on, since boto3 reads ``AWS_DEFAULT_REGION`` alone. Credentials never pass
through this code, its name, its messages or its metrics.
"""

import json
import os
import re
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

from embedding_assets.core.sources.base import Changes, Read, Skip, Source, SourceError
from embedding_assets.core.sources.folder import DEFAULT_MAX_FILE_BYTES
from embedding_assets.core.sources.records import SUPPORTED_SUFFIXES, parse, suffix, versioned

RECONCILE_SECONDS = 3600.0  # with a queue, a full listing this often catches what the queue missed
_RECEIVE_BATCH = 10  # SQS's maximum for receive_message and delete_message_batch
_CONNECT_TIMEOUT = 10.0
_READ_TIMEOUT = 60.0
_BUCKET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{2,254}")  # today's rules, plus legacy upper case and "_"
_MISSING_KEY = frozenset({"NoSuchKey", "404", "NotFound"})
_MISSING_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


class S3Prefix(Source):
    """The objects under ``s3://bucket/prefix``, with an optional SQS queue of their event notifications.

    Args:
        uri: ``s3://bucket/prefix``; the prefix may be empty and is given a trailing ``/``.
        queue_url: the SQS queue the bucket notifies (``s3:ObjectCreated:*`` and ``s3:ObjectRemoved:*``);
            without one, ``changes`` returns None and every sync diffs a listing.
        id_field: the id field of ``.json``/``.jsonl`` records.
        text_field: the text field of ``.json``/``.jsonl`` records.
        max_object_bytes: larger objects are skipped without being downloaded.
        client: an S3 client to use instead of one built from the environment.
        sqs: an SQS client to use instead of one built from the environment.
    """

    reconcile_seconds: float | None
    """Seconds between full listings when the feed is trusted; None: every sync diffs a listing."""

    def __init__(
        self,
        uri: str,
        *,
        queue_url: str | None = None,
        id_field: str = "id",
        text_field: str = "text",
        max_object_bytes: int = DEFAULT_MAX_FILE_BYTES,
        client: Any | None = None,
        sqs: Any | None = None,
    ) -> None:
        self.bucket, self.prefix = parse_uri(uri)
        self.name = f"s3://{self.bucket}/{self.prefix}"
        self.queue_url = queue_url or None
        self.id_field = id_field
        self.text_field = text_field
        self.max_object_bytes = max_object_bytes
        self.reconcile_seconds = RECONCILE_SECONDS if self.queue_url else None
        self._s3_client = client
        self._sqs_client = sqs
        self._malformed = 0
        self._oldest_age: float | None = None

    # Configuration

    def prepare(self) -> None:
        """Check that the bucket and, with a feed, the queue exist and can be reached."""
        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except _aws_errors() as err:
            raise _source_error(err, f"bucket {self.bucket!r} does not exist or cannot be read") from None
        if self.queue_url:
            try:
                self._sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
            except _aws_errors() as err:
                raise _source_error(
                    err, f"queue {self.queue_url!r} does not exist or cannot be read (EMBEDDING_ASSETS_SOURCE_QUEUE)"
                ) from None

    # Reads

    def listing(self) -> Iterator[tuple[str, str]]:
        """(relative key, versioned ETag) of every supported object, in key order (S3 lists in UTF-8 byte order)."""
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        try:
            for page in pages:
                for obj in page.get("Contents", []):
                    key = self.relative(obj["Key"])
                    if key is not None:
                        yield key, versioned(key, _etag(obj["ETag"]))
        except _aws_errors() as err:
            raise _source_error(err, f"cannot list {self.name}") from None

    def read(self, key: str) -> Read | None:
        """The object's documents (or one skip when it is over the size limit), or None when it is gone.

        Only a missing key reads None: any other failure (a missing bucket, denied access) raises
        ``SourceError``, since None would delete the key's documents from the index.
        """
        if suffix(key) not in SUPPORTED_SUFFIXES:
            return None
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except _aws_errors() as err:
            if _error_code(err) in _MISSING_KEY:
                return None
            raise _source_error(err, f"cannot read {self.name}{key}") from None
        body, size = response["Body"], int(response["ContentLength"])
        version = versioned(key, _etag(response["ETag"]))
        try:
            if size > self.max_object_bytes:  # the body is closed unread: only the headers came over
                return Read(version, [Skip(key, self._too_big(size))])
            data = body.read()
        finally:
            body.close()
        return Read(version, parse(key, data, id_field=self.id_field, text_field=self.text_field))

    def relative(self, object_key: str) -> str | None:
        """The source key of an object key: relative to the prefix, and None unless under it and supported."""
        if not object_key.startswith(self.prefix):
            return None
        key = object_key[len(self.prefix) :]
        return key if suffix(key) in SUPPORTED_SUFFIXES else None

    # Change feed

    def changes(self, cursor: str | None, limit: int) -> Changes | None:
        """Keys named by the queue's event notifications, about ``limit`` of them; None without a queue.

        ``cursor`` is ignored: a queue has no position, and what is received stays invisible until the
        visibility timeout. Every received message's receipt handle goes into the returned cursor, so
        ``acknowledge`` deletes the whole batch, test events and malformed messages included. The
        queue is short-polled (``WaitTimeSeconds=0``) so an idle call returns at once; on real SQS a short
        poll can miss messages that the next call gets.
        """
        if not self.queue_url:
            return None
        keys: dict[str, None] = {}  # insertion-ordered and deduplicated
        receipts: list[str] = []
        sent: list[int] = []  # SentTimestamp, in milliseconds
        named: list[int] = []  # the same, of messages that name keys (S3 sends them as objects are written)
        while (taken := max(len(keys), len(receipts))) < limit:  # messages too, so the cursor stays bounded
            messages = self._receive(min(_RECEIVE_BATCH, limit - taken))
            if not messages:
                break
            for message in messages:
                receipts.append(message["ReceiptHandle"])
                stamp = int(message.get("Attributes", {}).get("SentTimestamp", 0))
                message_keys = self._message_keys(message.get("Body", ""))
                sent.append(stamp)
                named.extend([stamp] if message_keys and stamp > 0 else [])
                keys.update(dict.fromkeys(message_keys))
        sent = [stamp for stamp in sent if stamp > 0]
        self._oldest_age = max(0.0, time.time() - min(sent) / 1000) if sent else None
        cut = max(len(keys), len(receipts)) >= limit
        since = min(named) / 1000 if named else None
        return Changes(changed=tuple(keys), cursor=json.dumps({"receipts": receipts}), more=cut, since=since)

    def acknowledge(self, changes: Changes) -> None:
        """Delete the batch's messages (in chunks of 10). A delete that fails leaves its message to be
        received again, which only re-reads its keys."""
        if not self.queue_url or not changes.cursor:
            return
        try:
            receipts = json.loads(changes.cursor).get("receipts", [])
        except (ValueError, AttributeError):  # not a cursor of ours: nothing to delete
            return
        for start in range(0, len(receipts), _RECEIVE_BATCH):
            chunk = receipts[start : start + _RECEIVE_BATCH]
            entries = [{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(chunk)]
            try:
                self._sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except _aws_errors() as err:
                raise _source_error(err, f"cannot delete messages from {self.queue_url!r}") from None

    def metrics(self) -> dict[str, float]:
        """Queue depth and in-flight messages, malformed messages seen by this process, and
        ``oldest_message_age_seconds``: SQS has no such attribute, so it is the age of the oldest message
        of the last ``changes`` batch when it was received (absent when that batch was empty)."""
        if not self.queue_url:
            return {}
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        try:
            attributes = self._sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=names)["Attributes"]
        except _aws_errors() as err:
            raise _source_error(err, f"cannot read the attributes of {self.queue_url!r}") from None
        figures = {
            "queue_depth": float(attributes.get(names[0], 0)),
            "queue_in_flight": float(attributes.get(names[1], 0)),
            "malformed_messages": float(self._malformed),
        }
        if self._oldest_age is not None:
            figures["oldest_message_age_seconds"] = self._oldest_age
        return figures

    def _receive(self, count: int) -> list[dict[str, Any]]:
        try:
            response = self._sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["SentTimestamp"],
            )
        except _aws_errors() as err:
            raise _source_error(err, f"cannot receive from {self.queue_url!r}") from None
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def _message_keys(self, body: str) -> list[str]:
        """Source keys a message names; a message that is not an S3 event is counted as malformed."""
        object_keys = event_object_keys(body, self.bucket)
        if object_keys is None:
            self._malformed += 1
            return []
        return [key for key in map(self.relative, object_keys) if key is not None]

    def _too_big(self, size: int) -> str:
        return f"object is {size} bytes, over the {self.max_object_bytes}-byte limit (EMBEDDING_ASSETS_MAX_FILE_BYTES)"

    # Clients, built on first use so that constructing a source costs nothing

    @property
    def _s3(self) -> Any:
        if self._s3_client is None:
            self._s3_client = _client("s3")
        return self._s3_client

    @property
    def _sqs(self) -> Any:
        if self._sqs_client is None:
            self._sqs_client = _client("sqs")
        return self._sqs_client


def parse_uri(uri: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://bucket/prefix``, the prefix ending in ``/`` unless empty.

    The URI is not repeated in the error, in case someone pasted credentials into it.
    """
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not _BUCKET_NAME.fullmatch(bucket):
        raise SourceError("the source must be an s3://bucket/prefix URI with a valid bucket name")
    return bucket, prefix if not prefix or prefix.endswith("/") else prefix + "/"


def event_object_keys(body: str, bucket: str) -> list[str] | None:
    """Decoded object keys of ``bucket`` that an S3 event notification names, in its order.

    A test event (``s3:TestEvent``) names none; a notification relayed by SNS is unwrapped. None when
    the body is not an S3 event at all. Keys arrive form-encoded (``a+b%2F%C3%A4.md``).
    """
    try:
        event = json.loads(body)
        if isinstance(event, dict) and event.get("Type") == "Notification" and isinstance(event.get("Message"), str):
            event = json.loads(event["Message"])
    except ValueError:
        return None
    if not isinstance(event, dict):
        return None
    if event.get("Event") == "s3:TestEvent":
        return []
    records = event.get("Records")
    if not isinstance(records, list):
        return None
    try:
        return [
            urllib.parse.unquote_plus(record["s3"]["object"]["key"])
            for record in records
            if record["s3"]["bucket"]["name"] == bucket
        ]
    except (KeyError, TypeError):
        return None


def _client(service: str) -> Any:
    """A boto3 client from the standard chain. boto3 reads the endpoint variables and credentials itself;
    it reads only AWS_DEFAULT_REGION, so AWS_REGION (which takes precedence here, as in object_store)
    is passed on."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=_CONNECT_TIMEOUT, read_timeout=_READ_TIMEOUT)
    return boto3.client(service, region_name=os.environ.get("AWS_REGION") or None, config=config)


def _aws_errors() -> tuple[type[Exception], ...]:
    """botocore's errors (a failed call, no credentials, no connection), imported only once one is raised."""
    from botocore.exceptions import BotoCoreError, ClientError

    return BotoCoreError, ClientError


def _etag(value: str) -> str:
    """The ETag without its quotes, the same whether listed or read."""
    return value.strip('"')


def _error_code(err: Exception) -> str:
    """The AWS error code of a botocore ``ClientError``, else ""."""
    response = getattr(err, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _source_error(err: Exception, what: str) -> SourceError:
    """A ``SourceError`` saying what failed and why (botocore's messages name no credentials)."""
    if _error_code(err) in _MISSING_QUEUE:
        return SourceError(f"{what}: the queue does not exist")
    return SourceError(f"{what} ({err})")
