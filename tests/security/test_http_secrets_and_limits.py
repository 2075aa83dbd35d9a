"""The OpenAI-compatible backend facing a hostile or broken server, through httpx transports (no socket):
the key never shows in any form, and time, size and decompression are bounded."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from bounded import run_bounded

import promptask
from promptask import BackendError, ConfigurationError
from promptask.backends.openai import MAX_RESPONSE_BYTES, OpenAIBackend

KEY = "sk-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1"  # 44 characters, like a real one
COMPLETION = {"choices": [{"message": {"content": '{"label": "positive"}'}, "finish_reason": "stop"}]}


def backend_for(handler: Callable[[httpx.Request], httpx.Response], url: str = "http://api.invalid/v1",
                **options: Any) -> OpenAIBackend:  # fmt: skip
    settings: dict[str, Any] = {"max_retries": 1, "backoff": 0.01, "max_backoff": 0.02, "timeout": 5.0, **options}
    return OpenAIBackend(url, "m", transport=httpx.MockTransport(handler), **settings)


def leaks(text: str, secret: str) -> list[str]:
    """Every piece of ``secret`` of 8 or more characters that shows in ``text``."""
    return [secret[i : i + 8] for i in range(len(secret) - 7) if secret[i : i + 8] in text]


def everything_shown(caught: pytest.ExceptionInfo[BaseException], caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join([str(caught.value), repr(caught.value), "".join(traceback.format_exception(caught.value)),
                      caplog.text])  # fmt: skip


@pytest.mark.parametrize("suffix", ["\n", "\r\n", " ", "\t"])
def test_a_key_read_with_trailing_whitespace_is_stripped(suffix: str) -> None:
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["authorization"])
        return httpx.Response(200, json=COMPLETION)

    with backend_for(answer, api_key=KEY + suffix) as backend:
        assert promptask.tasks.sentiment("x", backend=backend, cache=False).label == "positive"
    assert sent == [f"Bearer {KEY}"]


@pytest.mark.parametrize("bad", [KEY[:20] + "\n" + KEY[20:], KEY[:20] + " " + KEY[20:], KEY + "\x00", KEY + "é"])
def test_a_key_with_whitespace_or_control_characters_inside_is_refused_without_showing_it(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="API key contains") as caught:
        OpenAIBackend("http://api.invalid/v1", "m", api_key=bad)
    assert not leaks("".join(traceback.format_exception(caught.value)), KEY)


def echo(status: int, shape: Callable[[str], Any]) -> Callable[[httpx.Request], httpx.Response]:
    """A server that answers ``status`` with the Authorization header it got, in some shape."""

    def answer(request: httpx.Request) -> httpx.Response:
        header = request.headers["authorization"]
        return httpx.Response(status, json=shape(header))

    return answer


SHAPES: dict[str, Callable[[str], Any]] = {
    "error message": lambda h: {"error": {"message": f"invalid key {h}: " + "x" * 600}},
    "cut at the secret": lambda h: {"error": {"message": "x" * (480 - len("Bearer ")) + h}},
    "detail": lambda h: {"detail": [{"msg": f"bad {h}"}]},
    "escaped": lambda h: {"error": {"message": json.dumps(h + "\n")}},
    "url-quoted": lambda h: {"error": {"message": "see /login?token=" + h.replace(" ", "%20").replace("/", "%2F")}},
    "plain body": lambda h: f"{h} " * 40,
}


@pytest.mark.parametrize("status", [401, 503])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_an_echoed_key_shows_nowhere(status: int, shape: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with backend_for(echo(status, SHAPES[shape]), api_key=KEY + "\n") as backend:
        with pytest.raises(BackendError) as caught:
            promptask.tasks.sentiment("x", backend=backend, cache=False)
        shown = everything_shown(caught, caplog) + repr(backend) + backend.fingerprint()
    assert not leaks(shown, KEY), shown[:2000]


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_url_credentials_and_their_base64_show_nowhere(shape: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    password = "pa55word-Very-Secret/42"
    url = "http://user:" + password.replace("/", "%2F") + "@api.invalid/v1"
    token = base64.b64encode(f"user:{password}".encode()).decode()
    with backend_for(echo(401, SHAPES[shape]), url=url) as backend:
        with pytest.raises(BackendError) as caught:
            promptask.tasks.sentiment("x", backend=backend, cache=False)
        shown = everything_shown(caught, caplog) + repr(backend) + backend.fingerprint()
    assert not leaks(shown, password) and not leaks(shown, token)


def test_a_query_string_goes_with_every_request_and_into_the_fingerprint_without_credentials() -> None:
    seen: list[httpx.URL] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json=COMPLETION)

    url = "http://api.invalid/openai/v1?api-version=2024-06-01&api_key=s3cret-query-key"
    with backend_for(answer, url=url) as backend:
        promptask.tasks.sentiment("x", backend=backend, cache=False)
        fingerprint = backend.fingerprint()
    assert seen[0].path == "/openai/v1/chat/completions"
    assert seen[0].params["api-version"] == "2024-06-01" and seen[0].params["api_key"] == "s3cret-query-key"
    assert "api-version=2024-06-01" in fingerprint and "s3cret" not in fingerprint
    assert backend_for(answer, url=url.replace("2024-06-01", "2025-01-01")).fingerprint() != fingerprint


class Trickle(httpx.AsyncByteStream):
    """A body that arrives one byte every ``every`` seconds: each read is quick, the whole is not."""

    def __init__(self, body: bytes, every: float) -> None:
        self.body, self.every = body, every

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(len(self.body)):
            await asyncio.sleep(self.every)
            yield self.body[i : i + 1]


def test_the_timeout_bounds_a_whole_attempt_not_each_read() -> None:
    body = json.dumps(COMPLETION).encode()
    with backend_for(lambda request: httpx.Response(200, stream=Trickle(body, 0.05)), timeout=0.5,
                     max_retries=0) as backend:  # fmt: skip
        started = time.monotonic()
        with pytest.raises(BackendError, match=r"no response within 0\.5 s"):
            promptask.tasks.sentiment("x", backend=backend, cache=False)
    assert time.monotonic() - started < 2.0  # the whole body would take over 3 s


class Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: Any) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


def test_a_response_over_the_cap_is_refused() -> None:
    big = b'{"choices": [{"message": {"content": "' + b"a" * MAX_RESPONSE_BYTES + b'"}}]}'
    chunks = [big[i : i + 65536] for i in range(0, len(big), 65536)]
    backend = backend_for(lambda request: httpx.Response(200, stream=Chunks(chunks)), max_retries=0)
    with backend, pytest.raises(BackendError, match="larger than"):
        promptask.tasks.sentiment("x", backend=backend, cache=False)


def test_an_unrequested_encoding_is_refused() -> None:
    answer = httpx.Response(200, headers={"content-encoding": "br"}, stream=Chunks([b"\x00" * 10]))
    backend = backend_for(lambda request: answer, max_retries=0)
    with backend, pytest.raises(BackendError, match="br-encoded"):
        promptask.tasks.sentiment("x", backend=backend, cache=False)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_answer_within_the_cap_is_read(encoding: str) -> None:
    import zlib

    raw = json.dumps(COMPLETION).encode()
    packer = zlib.compressobj(wbits=31 if encoding == "gzip" else 15)
    body = packer.compress(raw) + packer.flush()
    answer = httpx.Response(200, headers={"content-encoding": encoding}, stream=Chunks([body[:5], body[5:]]))
    with backend_for(lambda request: answer, max_retries=0) as backend:
        assert promptask.tasks.sentiment("x", backend=backend, cache=False).label == "positive"


GZIP_BOMB = """
import json, zlib, httpx, promptask
from promptask import BackendError
from promptask.backends.openai import OpenAIBackend

def bomb():  # 2 GB of zeros, gzip-compressed, made chunk by chunk as it is read (a few MB)
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    yield packer.compress(b'{"choices": [{"message": {"content": "')
    zeros = b"0" * 2**20
    for _ in range(2048):
        yield packer.compress(zeros)
    yield packer.flush()

class Body(httpx.AsyncByteStream):
    async def __aiter__(self):
        for chunk in bomb():
            yield chunk

def answer(request):
    return httpx.Response(200, headers={"content-encoding": "gzip"}, stream=Body())

backend = OpenAIBackend("http://api.invalid/v1", "m", transport=httpx.MockTransport(answer), max_retries=0)
try:
    promptask.tasks.sentiment("x", backend=backend, cache=False)
    print(json.dumps("answered"))
except BackendError as exc:
    print(json.dumps("BackendError: " + str(exc)))
"""


def test_a_gzip_bomb_is_refused_within_bounded_memory() -> None:
    outcome = run_bounded(GZIP_BOMB, seconds=60)
    assert outcome.startswith("BackendError: ") and "larger than" in outcome, outcome
