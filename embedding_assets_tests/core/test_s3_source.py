"""The S3-prefix source against moto's real server (S3 and SQS over HTTP), driven like the change index.

Each test has its own bucket and queue. The bucket notifies the queue of ``docs/``, and a test relies on
delivery only once the ``s3:TestEvent`` has arrived (moto swallows delivery errors). The consumers
mirror ``core.change_index``: read every key a batch names, apply the reads, then acknowledge; or,
without a queue, diff listings. After every step the index must equal the oracle, which is a full
listing plus a read of every key.
"""

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from embedding_assets.core.sources import Document, Read, Skip, SourceError
from embedding_assets.core.sources.s3 import S3Prefix, event_object_keys, parse_uri
from embedding_assets_tests.services import S3_KEY_ID, S3_SECRET, ObjectStore

pytestmark = pytest.mark.slow

PREFIX = "docs/"
Entries = list[tuple[str, str]]  # (doc_id, doc_hash), or (id, "skip: reason") for a skip
Index = dict[str, Entries]


@dataclass(frozen=True)
class Feed:
    """A bucket whose ``docs/`` objects notify a queue, and clients of both."""

    bucket: str
    queue_url: str
    s3: Any
    sqs: Any

    def source(self, **kwargs: Any) -> S3Prefix:
        return S3Prefix(f"s3://{self.bucket}/{PREFIX}", queue_url=self.queue_url, **kwargs)

    def put(self, key: str, body: str | bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body.encode() if isinstance(body, str) else body)

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def depth(self) -> tuple[int, int]:
        """(visible, in flight) messages of the queue."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        got = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=names)["Attributes"]
        return int(got[names[0]]), int(got[names[1]])


@pytest.fixture
def aws(object_store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> ObjectStore:
    """The server's standard AWS variables, which the source's own clients read."""
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in object_store.env().items():
        monkeypatch.setenv(name, value)
    return object_store


@pytest.fixture
def bucket(aws: ObjectStore) -> str:
    name = f"ea-s3src-{uuid.uuid4().hex[:12]}"
    aws.create_bucket(name)
    return name


@pytest.fixture
def feed(aws: ObjectStore, bucket: str) -> Feed:
    """The bucket notifying a new queue of created and removed ``docs/`` objects. The test event is
    checked, then made visible again, so every test's first batch has a message naming no key."""
    s3, sqs = aws.client(), aws.sqs()
    queue_url = aws.notify_queue(bucket, PREFIX, f"ea-s3src-{uuid.uuid4().hex[:12]}")
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    assert [json.loads(m["Body"]).get("Event") for m in messages] == ["s3:TestEvent"], "notifications not delivered"
    sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=messages[0]["ReceiptHandle"], VisibilityTimeout=0)
    return Feed(bucket, queue_url, s3, sqs)


def entries(read: Read) -> Entries:
    return [
        (item.doc_id, item.doc_hash) if isinstance(item, Document) else (item.doc_id, f"skip: {item.reason}")
        for item in read.items
    ]


def apply(index: Index, source: S3Prefix, keys: set[str] | tuple[str, ...]) -> None:
    """Record what ``keys`` read now; a key that reads None is gone."""
    for key, read in source.read_many(sorted(keys)):
        if read is None:
            index.pop(key, None)
        else:
            index[key] = entries(read)


def sync_feed(index: Index, source: S3Prefix, limit: int = 100) -> set[str]:
    """Batches of the feed until it has no more, each read, applied, then acknowledged: the keys named."""
    named: set[str] = set()
    while True:
        changes = source.changes(None, limit)
        assert changes is not None
        apply(index, source, changes.changed)
        source.acknowledge(changes)
        named |= set(changes.changed)
        if not changes.more:
            return named


def sync_listing(index: Index, versions: dict[str, str], source: S3Prefix) -> set[str]:
    """Without a feed: read the keys whose listed version changed or that are no longer listed."""
    listed = dict(source.listing())
    stale = {key for key, version in listed.items() if versions.get(key) != version} | (set(versions) - set(listed))
    apply(index, source, stale)
    versions.clear()
    versions.update(listed)
    return stale


def oracle(source: S3Prefix) -> Index:
    """What the index must hold: every listed key, read now."""
    truth: Index = {}
    for key, version in source.listing():
        read = source.read(key)
        assert read is not None
        assert read.version == version, "a read's version is the listed ETag"
        truth[key] = entries(read)
    return truth


def test_feed_follows_put_overwrite_copy_and_delete(feed: Feed) -> None:
    src, index = feed.source(), {}
    assert src.name == f"s3://{feed.bucket}/docs/"
    assert src.reconcile_seconds == 3600.0
    src.prepare()
    for key, body in {"a.md": "Alpha.", "b.md": "Beta.", "guide/intro.md": "# Intro\n\nHello."}.items():
        feed.put(PREFIX + key, body)
    feed.put("other/outside.md", "Not under the prefix.")  # the prefix filter drops its event
    feed.put(PREFIX + "image.png", b"\x89PNG")  # notified, but not a supported suffix
    assert sync_feed(index, src) == {"a.md", "b.md", "guide/intro.md"}
    assert index == oracle(src)
    assert index["guide/intro.md"][0][0] == "guide/intro.md"

    before = dict(index)
    feed.put(PREFIX + "a.md", "Alpha.")  # the same content: an event, and the same hash
    assert sync_feed(index, src) == {"a.md"}
    assert index == before == oracle(src)

    feed.put(PREFIX + "b.md", "Beta, revised.")
    assert sync_feed(index, src) == {"b.md"}
    assert index["b.md"] != before["b.md"]
    assert index == oracle(src)

    feed.s3.copy_object(Bucket=feed.bucket, Key=PREFIX + "c.md", CopySource={"Bucket": feed.bucket, "Key": "docs/a.md"})
    assert sync_feed(index, src) == {"c.md"}
    assert index["c.md"] == [("c.md", index["a.md"][0][1])]
    assert index == oracle(src)

    feed.delete(PREFIX + "b.md")
    assert sync_feed(index, src) == {"b.md"}
    assert "b.md" not in index
    assert index == oracle(src)

    assert sync_feed(index, src) == set()
    assert feed.depth() == (0, 0)
    metrics = src.metrics()
    assert metrics["queue_depth"] == metrics["queue_in_flight"] == metrics["malformed_messages"] == 0


ODD_KEYS = (
    "with space.md",
    "plus+sign.md",
    "literal%2Bplus.md",
    "100%.md",
    "ünïcødé/straße.md",
    "a/b/c/deep.txt",
    "mixed + %20 & ?=.md",
)


def test_odd_keys_are_decoded_and_read_the_right_object(feed: Feed) -> None:
    src, index = feed.source(), {}
    for key in ODD_KEYS:
        feed.put(PREFIX + key, f"The object stored under {key!r}.")
    assert sync_feed(index, src) == set(ODD_KEYS)
    assert index == oracle(src)
    for key in ODD_KEYS:
        read = src.read(key)
        assert read is not None and isinstance(doc := read.items[0], Document)
        assert (doc.doc_id, doc.text) == (key, f"The object stored under {key!r}.")

    for key in ODD_KEYS:
        feed.delete(PREFIX + key)
    assert sync_feed(index, src) == set(ODD_KEYS)
    assert index == {} == oracle(src)


def test_unacknowledged_messages_are_redelivered(feed: Feed) -> None:
    feed.sqs.set_queue_attributes(QueueUrl=feed.queue_url, Attributes={"VisibilityTimeout": "1"})
    src = feed.source()
    keys = {"one.md", "two.md", "three/four.md"}
    written = time.time()
    for key in keys:
        feed.put(PREFIX + key, key)

    crashed = src.changes(None, 100)  # received, then the process dies before acknowledging
    assert crashed is not None and set(crashed.changed) == keys
    assert (
        crashed.since is not None and written - 1 <= crashed.since <= time.time()
    )  # the first put, not the test event
    assert len(json.loads(crashed.cursor)["receipts"]) == len(keys) + 1  # the test event too
    assert feed.depth() == (0, len(keys) + 1)
    hidden = src.changes(None, 100)
    assert hidden is not None and hidden.changed == ()
    src.acknowledge(hidden)

    time.sleep(1.5)
    again = src.changes(None, 100)
    assert again is not None and set(again.changed) == keys
    src.acknowledge(again)
    time.sleep(1.5)
    after = src.changes(None, 100)
    assert after is not None and after.changed == ()
    assert feed.depth() == (0, 0)


def test_limit_cuts_the_batch(feed: Feed) -> None:
    src, index = feed.source(), {}
    keys = {f"n{i:02}.md" for i in range(12)}
    for key in keys:
        feed.put(PREFIX + key, key)
    first = src.changes(None, 5)
    assert first is not None and first.more and len(first.changed) <= 5
    apply(index, src, first.changed)
    src.acknowledge(first)
    assert "oldest_message_age_seconds" in src.metrics()
    assert set(first.changed) | sync_feed(index, src, limit=5) == keys
    assert index == oracle(src)
    idle = src.changes(None, 5)
    assert idle is not None and (idle.changed, idle.more) == ((), False)
    assert "oldest_message_age_seconds" not in src.metrics()


def test_listing_fallback_without_a_queue(aws: ObjectStore, bucket: str) -> None:
    s3 = aws.client()
    src, index, versions = S3Prefix(f"s3://{bucket}/docs"), {}, {}
    assert (src.name, src.reconcile_seconds, src.metrics()) == (f"s3://{bucket}/docs/", None, {})
    assert src.changes(None, 100) is None
    src.prepare()
    for key in ("b.md", "a.md", "sub/c.txt"):
        s3.put_object(Bucket=bucket, Key=PREFIX + key, Body=key.encode())
    s3.put_object(Bucket=bucket, Key="docs.md", Body=b"beside the prefix, not under it")
    assert [key for key, _ in src.listing()] == ["a.md", "b.md", "sub/c.txt"]
    assert sync_listing(index, versions, src) == {"a.md", "b.md", "sub/c.txt"}
    assert index == oracle(src)

    s3.put_object(Bucket=bucket, Key="docs/a.md", Body=b"a.md")  # same content, same ETag: nothing to read
    assert sync_listing(index, versions, src) == set()
    s3.put_object(Bucket=bucket, Key="docs/b.md", Body=b"b, revised")
    s3.delete_object(Bucket=bucket, Key="docs/sub/c.txt")
    assert sync_listing(index, versions, src) == {"b.md", "sub/c.txt"}
    assert set(index) == {"a.md", "b.md"}
    assert index == oracle(src)


def test_jsonl_objects_hold_records_and_a_bad_line_is_a_skip(feed: Feed) -> None:
    src, index = feed.source(), {}
    lines = ['{"id": "r1", "text": "First."}', '{"id": "r2", "text": "Second."}', "{not json", '{"id": 3, "text": "3"}']
    feed.put(PREFIX + "set/records.jsonl", "\n".join(lines) + "\n")
    assert sync_feed(index, src) == {"set/records.jsonl"}
    read = src.read("set/records.jsonl")
    assert read is not None
    assert [item.doc_id for item in read.items] == ["r1", "r2", "set/records.jsonl:3", "3"]
    assert isinstance(skip := read.items[2], Skip) and "malformed JSON" in skip.reason
    assert index == oracle(src)

    feed.put(PREFIX + "set/records.jsonl", lines[0] + "\n")  # r2, the bad line and 3 are gone
    assert sync_feed(index, src) == {"set/records.jsonl"}
    assert [doc_id for doc_id, _ in index["set/records.jsonl"]] == ["r1"]
    assert index == oracle(src)


class _Unread:
    """A body that records whether it was read."""

    def __init__(self, body: Any) -> None:
        self.body, self.read_calls, self.closed = body, 0, False

    def read(self, *args: Any) -> bytes:
        self.read_calls += 1
        return bytes(self.body.read(*args))

    def close(self) -> None:
        self.closed = True
        self.body.close()


class _RecordingClient:
    """An S3 client whose get_object bodies record whether they were read."""

    def __init__(self, client: Any) -> None:
        self.client, self.bodies = client, dict[str, _Unread]()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def get_object(self, **kwargs: Any) -> Any:
        response = self.client.get_object(**kwargs)
        response["Body"] = self.bodies[kwargs["Key"]] = _Unread(response["Body"])
        return response


def test_an_object_over_the_limit_is_a_skip_and_not_downloaded(feed: Feed) -> None:
    client = _RecordingClient(feed.s3)
    src, index = feed.source(client=client, max_object_bytes=100), {}
    feed.put(PREFIX + "big.md", "x" * 1000)
    feed.put(PREFIX + "small.md", "Small.")
    assert sync_feed(index, src) == {"big.md", "small.md"}
    (skip,) = index["big.md"]
    assert skip[0] == "big.md"
    assert "1000 bytes" in skip[1] and "100-byte limit" in skip[1] and "EMBEDDING_ASSETS_MAX_FILE_BYTES" in skip[1]
    big = client.bodies[PREFIX + "big.md"]
    assert (big.read_calls, big.closed) == (0, True)
    assert client.bodies[PREFIX + "small.md"].read_calls == 1
    assert index == oracle(src)


def test_malformed_messages_are_acknowledged_and_counted(feed: Feed) -> None:
    src = feed.source()
    relayed = {"Records": [{"s3": {"bucket": {"name": feed.bucket}, "object": {"key": "docs/via+sns.md"}}}]}
    other_bucket = {"Records": [{"s3": {"bucket": {"name": "elsewhere"}, "object": {"key": "docs/x.md"}}}]}
    bodies = [
        "not json",
        '{"hello": "world"}',
        "[1, 2]",
        '{"Records": [{"s3": {}}]}',
        json.dumps({"Type": "Notification", "Message": json.dumps(relayed)}),
        json.dumps(other_bucket),
    ]
    for body in bodies:
        feed.sqs.send_message(QueueUrl=feed.queue_url, MessageBody=body)
    feed.put(PREFIX + "real.md", "Real.")
    changes = src.changes(None, 100)
    assert changes is not None and set(changes.changed) == {"via sns.md", "real.md"}
    assert src.metrics()["malformed_messages"] == 4
    assert src.read("via sns.md") is None  # named, but never written: it reads as gone
    src.acknowledge(changes)
    assert feed.depth() == (0, 0)


def test_missing_bucket_or_queue_is_a_clear_source_error(aws: ObjectStore, bucket: str) -> None:
    missing = S3Prefix(f"s3://{bucket}-missing/docs/")
    with pytest.raises(SourceError, match=rf"bucket '{bucket}-missing' does not exist") as err:
        missing.prepare()
    with pytest.raises(SourceError, match="cannot read"):
        missing.read("a.md")  # not None: that would delete the key's documents
    with pytest.raises(SourceError, match="cannot list"):
        list(missing.listing())

    queue_url = f"{aws.endpoint}/123456789012/ea-no-such-queue-{uuid.uuid4().hex[:8]}"
    with pytest.raises(SourceError, match="EMBEDDING_ASSETS_SOURCE_QUEUE") as queue_err:
        S3Prefix(f"s3://{bucket}/docs/", queue_url=queue_url).prepare()
    assert "does not exist" in str(queue_err.value)
    for message in (str(err.value), str(queue_err.value)):
        assert S3_SECRET not in message and S3_KEY_ID not in message


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket", ("bucket", "")),
        ("s3://bucket/", ("bucket", "")),
        ("s3://bucket/docs", ("bucket", "docs/")),
        ("s3://bucket/docs/guide/", ("bucket", "docs/guide/")),
    ],
)
def test_parse_uri(uri: str, expected: tuple[str, str]) -> None:
    assert parse_uri(uri) == expected


@pytest.mark.parametrize("uri", ["bucket/docs", "s3://", "s3://x", "s3://key:secret@bucket/docs", "file:///tmp"])
def test_parse_uri_refuses_without_echoing(uri: str) -> None:
    with pytest.raises(SourceError, match="s3://bucket/prefix") as err:
        parse_uri(uri)
    assert "secret" not in str(err.value)


def test_event_object_keys() -> None:
    event = {"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": "a+b%2F%C3%A4.md"}}}]}
    assert event_object_keys(json.dumps(event), "b") == ["a b/ä.md"]
    assert event_object_keys(json.dumps({"Event": "s3:TestEvent", "Bucket": "b"}), "b") == []
    assert event_object_keys("{", "b") is None


def test_unsupported_keys_are_not_part_of_the_source() -> None:
    src = S3Prefix("s3://bucket/docs/", client=object(), sqs=object())  # any request would fail
    assert src.read("image.png") is None
    assert src.relative("docs/a.md") == "a.md"
    assert src.relative("docs/a.png") is None
    assert src.relative("other/a.md") is None
