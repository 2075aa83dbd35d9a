"""Any OpenAI-compatible chat completions server: llama.cpp's server, vLLM, Ollama, hosted APIs.

>>> import promptask
>>> from promptask.backends.openai import OpenAIBackend
>>> backend = OpenAIBackend("http://127.0.0.1:8080/v1", "smollm2")
>>> backend
OpenAIBackend('http://127.0.0.1:8080/v1', model='smollm2')
>>> promptask.tasks.sentiment("I love it", backend=backend)  # doctest: +SKIP
Sentiment(label='positive')

URI: ``openai:http://127.0.0.1:8080/v1#model-name`` (the part after ``#`` is the
model; without it, ``default``).  The API key comes from ``api_key``, else
``PROMPTASK_API_KEY``, else ``OPENAI_API_KEY``.  It is sent as a bearer token
and appears nowhere else: not in the repr, fingerprint, cache keys, logs or
error messages (text a server echoes back is scrubbed of it).  Credentials in
the URL (``https://user:password@host/v1``) are sent as HTTP basic auth
instead, and kept out of sight the same way.

How output follows the schema.  The schema goes out as ``response_format``
``{"type": "json_schema", ..., "strict": true}`` (``strict: false`` for a
schema strict mode cannot take: an optional property, an open object); a server that rejects that
(an HTTP 400, 422 or 500 whose message names the response format or schema) is asked again
without ``strict``, then with ``{"type": "json_object", "schema": ...}``
(JSON mode; llama.cpp's server enforces the schema given this way), then with
no response format at all, where promptask's parse-validate-retry loop does
the work.  Each step down happens once per backend instance and is logged;
``TaskResult.schema_enforcement`` and :attr:`OpenAIBackend.response_format`
say which path answered.

Limits.  ``timeout`` bounds each attempt as a whole, from connecting to the
last byte (a server trickling its answer cannot hold a call longer), and an
answer is read up to :data:`MAX_RESPONSE_BYTES` after decompression, then
abandoned.  Only ``gzip`` and ``deflate`` bodies are accepted, and they are
inflated in bounded steps, so a compressed bomb costs no more memory than
the cap.

Confidence.  A request that asks for scores also asks for ``logprobs`` with
``top_logprobs`` (:data:`TOP_LOGPROBS`); from the answer's token
log-probabilities the backend derives approximate scores
(:func:`promptask.scoring.scores_from_logprobs`).  A server that rejects
``logprobs`` is asked again without them, once per backend; one that answers
without them gives results with ``confidence=None``, and
:attr:`OpenAIBackend.confidence` (and ``describe()``) then says ``"none"``.

Network faults are retried here, apart from output validation: HTTP 408,
429 and 5xx, timeouts, refused or dropped connections and malformed bodies
wait ``backoff * 2**n`` seconds with jitter (or what ``Retry-After`` says)
and try again, ``max_retries`` times.  Other 4xx answers fail at once.  Each
failure is a :class:`~promptask.BackendError` with the URL, the HTTP status
and the server's own message.

All requests run on promptask's one background event loop
(:mod:`promptask.bridge`), at most ``max_concurrency`` in flight per backend.
So ``generate`` works from a plain script and from code already inside an
event loop (a notebook), ``agenerate`` awaits the same requests from any loop,
and ``Task.map`` keeps ``max_concurrency`` requests going.  Tests can pass
``transport=httpx.MockTransport(handler)`` to answer requests without a server.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import email.utils
import json
import logging
import os
import random
import re
import threading
import time
import weakref
import zlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlencode, urlsplit, urlunsplit

import httpx
from anyio.from_thread import BlockingPortal

from promptask.backends.base import BaseBackend
from promptask.bridge import on_bridge, portal
from promptask.errors import BackendError, ConfigurationError
from promptask.scoring import scores_from_logprobs
from promptask.types import Generation, GenerationRequest, SchemaEnforcement, Scores, Usage

__all__ = ["MAX_RESPONSE_BYTES", "OpenAIBackend", "RESPONSE_FORMATS", "TOP_LOGPROBS"]

TOP_LOGPROBS: Final = 20
"""Alternatives asked for at each token when a request wants scores (OpenAI's maximum)."""

log = logging.getLogger("promptask.backends.openai")

RESPONSE_FORMATS: Final = ("json_schema_strict", "json_schema", "json_object", "text")
"""The ways to ask for structured output, most to least enforced; a backend steps down on rejection."""

_ENFORCEMENT = {
    "json_schema_strict": SchemaEnforcement.SERVER,
    "json_schema": SchemaEnforcement.SERVER,
    "json_object": SchemaEnforcement.JSON,
    "text": SchemaEnforcement.NONE,
}
_RETRY_STATUS = frozenset({408, 409, 425, 429})
_FORMAT_WORDS = ("response_format", "json_schema", "json_object", "schema", "strict", "grammar")
_JSON = {"Content-Type": "application/json"}
_MAX_WAIT = 600.0  # seconds: a Retry-After beyond this is treated as this
_ENCODINGS = "gzip, deflate"  # what is asked for, and all that is accepted: both inflate in bounded steps
_CREDENTIAL_PARAM = re.compile(r"key|token|secret|passw|auth|sig|credential", re.IGNORECASE)

MAX_RESPONSE_BYTES: Final = 8 * 2**20
"""The most bytes of one answer that are read (after decompression); a longer one is an error."""


class _RetryableError(Exception):
    """A failure worth another try; ``wait`` is the server's Retry-After, if it sent one."""

    def __init__(self, problem: str, wait: float | None = None) -> None:
        super().__init__(problem)
        self.wait = wait


class _RejectedError(Exception):
    """A 4xx answer: not retried, but maybe a reason to step down the response format."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class OpenAIBackend(BaseBackend):
    """Run tasks on an OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8080/v1`` or ``https://api.openai.com/v1``.
        model: the model name the server expects.
        api_key: a bearer token; default ``PROMPTASK_API_KEY``, else ``OPENAI_API_KEY``, else none.
        timeout: seconds one attempt may take in all, from connecting to the last byte of the answer.
        max_retries: retries of a request after a network fault, 429 or 5xx.
        max_concurrency: requests in flight at once (also ``Task.map``'s default).
        backoff: the first retry's wait in seconds; it doubles each time, with jitter, up to ``max_backoff``.
        response_format: the first structured-output form to try (one of :data:`RESPONSE_FORMATS`).
        transport: an httpx transport to send requests through (``httpx.MockTransport`` in tests).

    >>> backend = OpenAIBackend("http://user:pw@127.0.0.1:8080/v1", "m", api_key="sk-secret")
    >>> backend, backend.fingerprint()
    (OpenAIBackend('http://127.0.0.1:8080/v1', model='m'), 'openai:http://127.0.0.1:8080/v1#m')
    """

    name = "openai"
    native_async = True
    concurrency: int = 8

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 4,
        max_concurrency: int = 8,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        response_format: str = "json_schema_strict",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"base_url must be an http:// or https:// URL, got {_public(base_url)!r}")
        if response_format not in RESPONSE_FORMATS:
            raise ConfigurationError(f"response_format must be one of {', '.join(RESPONSE_FORMATS)}")
        if timeout <= 0 or max_retries < 0 or max_concurrency < 1:
            raise ConfigurationError("timeout must be > 0, max_retries >= 0 and max_concurrency >= 1")
        self.url = _public(base_url)  # what messages show: no credentials, no query
        self._base = _without_credentials(base_url)
        # The query (Azure's api-version, say) goes with every request and changes answers, so it is
        # part of the fingerprint; parameters that look like credentials are kept out of it.
        self._params: list[tuple[str, str | int | float | bool | None]] = list(
            parse_qsl(parts.query, keep_blank_values=True)
        )
        self._query_id = urlencode([(k, v) for k, v in self._params if not _CREDENTIAL_PARAM.search(k)])
        self.model = model
        self.timeout = timeout
        self.max_retries = max_retries
        self.concurrency = max_concurrency
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._format = response_format
        self._key = _clean_key(api_key or os.environ.get("PROMPTASK_API_KEY") or os.environ.get("OPENAI_API_KEY"))
        self._basic: tuple[str, str] | None = None
        if parts.username or parts.password:  # credentials in the URL: HTTP basic auth, instead of the key
            self._basic = (unquote(parts.username or ""), unquote(parts.password or ""))
            self._key = None
        secrets = [self._key, *(self._basic or ()), self._basic_token()]
        secrets += [str(v) for k, v in self._params if _CREDENTIAL_PARAM.search(k)]
        self._secrets = sorted(_escaped_forms(s for s in secrets if s and len(s) > 3), key=len, reverse=True)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None
        self._start_lock = threading.Lock()
        self._logprobs = True  # the server takes logprobs (until it rejects them)
        self._logprobs_seen: bool | None = None  # whether the last scored answer carried them

    @property
    def response_format(self) -> str:
        """The structured-output form requests use now (it steps down when a server rejects one)."""
        return self._format

    @property
    def schema_enforcement(self) -> SchemaEnforcement:
        """How the schema is enforced now: by the server, JSON mode, or only by parse-and-retry."""
        return _ENFORCEMENT[self._format]

    @property
    def confidence(self) -> str:
        """``"logprobs"`` while the server returns token log-probabilities, ``"none"`` once it does not."""
        return "logprobs" if self._logprobs and self._logprobs_seen is not False else "none"

    def fingerprint(self) -> str:
        """The endpoint and model; never the key or URL credentials."""
        query = f"?{self._query_id}" if self._query_id else ""
        return f"openai:{self.url}{query}#{self.model}"

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.url!r}, model={self.model!r})"

    # -- requests -----------------------------------------------------------------------------

    def generate(self, request: GenerationRequest) -> Generation:
        """Send one request and wait for the answer (safe inside a running event loop)."""
        future = self._started().start_task_soon(self._generate, request)
        try:
            return future.result()
        finally:
            future.cancel()  # interrupted (Ctrl-C): do not leave the request running

    async def agenerate(self, request: GenerationRequest) -> Generation:
        """Send one request from any event loop."""
        bridge = self._started()
        if on_bridge():
            return await self._generate(request)
        generation: Generation = await asyncio.wrap_future(bridge.start_task_soon(self._generate, request))
        return generation

    def request_body(self, request: GenerationRequest, response_format: str | None = None) -> dict[str, Any]:
        """The JSON body sent for ``request`` (with the given or current response format)."""
        sampling = request.sampling
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.to_dict() for m in request.messages],
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.frequency_penalty:
            body["frequency_penalty"] = sampling.frequency_penalty
        if sampling.repeat_penalty != 1.0:
            body["repeat_penalty"] = sampling.repeat_penalty  # llama.cpp's server name for it
        if request.scores and self._logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = TOP_LOGPROBS
        form = response_format or self._format
        if request.schema is not None and form != "text":
            schema = dict(request.schema)
            if form == "json_object":
                body["response_format"] = {"type": "json_object", "schema": schema}
            else:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "output",
                        "schema": schema,
                        "strict": form == "json_schema_strict" and _strict_compatible(schema),
                    },
                }
        return body

    async def _generate(self, request: GenerationRequest) -> Generation:
        client, slots = self._client, self._slots
        if client is None or slots is None:
            raise BackendError(f"the backend for {self.url} was closed while a request waited")
        async with slots:
            while True:
                form = self._format
                started = time.perf_counter()
                try:
                    data = await self._post(client, self.request_body(request, form))
                except _RejectedError as exc:
                    if request.scores and self._logprobs and "logprob" in exc.message.lower():
                        self._logprobs = False
                        log.warning("%s rejected logprobs (%s); results have no confidence", self.url,
                                    " ".join(self._scrub(exc.message).split())[:160])  # fmt: skip
                        continue
                    if request.schema is not None and form != "text" and _about_format(exc.message):
                        self._step_down(form, exc)
                        continue
                    raise BackendError(self._scrub(f"{self.url} answered HTTP {exc.status}: {exc.message}")) from None
                generation = self._generation(data, form, time.perf_counter() - started)
                if request.scores and self._logprobs and request.schema is not None:
                    self._logprobs_seen, scores = _scores(data, request.schema)
                    generation = replace(generation, scores=scores)
                return generation

    def _step_down(self, form: str, exc: _RejectedError) -> None:
        if self._format == form:  # one step per rejected form, however many requests saw the rejection
            self._format = RESPONSE_FORMATS[RESPONSE_FORMATS.index(form) + 1]
            log.warning(
                "%s rejected response_format %s (HTTP %d: %s); using %s from now on",
                self.url, form, exc.status, " ".join(self._scrub(exc.message).split())[:160], self._format,
            )  # fmt: skip

    async def _post(self, client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
        """POST with network retries; the parsed JSON body of a 200 answer."""
        content = json.dumps(body, ensure_ascii=False).encode()
        problem = ""
        for attempt in range(self.max_retries + 1):
            try:
                return await self._post_once(client, content)
            except _RetryableError as exc:
                problem = self._scrub(str(exc))
                if attempt == self.max_retries:
                    break
                wait = exc.wait if exc.wait is not None else self._backoff(attempt)
                log.warning("%s: %s; retry %d of %d in %.1f s", self.url, problem, attempt + 1, self.max_retries, wait)
                await asyncio.sleep(wait)
        tries = self.max_retries + 1
        raise BackendError(self._scrub(f"{self.url}: {problem} ({tries} attempt{'s' * (tries > 1)})")) from None

    async def _post_once(self, client: httpx.AsyncClient, content: bytes) -> dict[str, Any]:
        try:
            # httpx's timeout is per read: the overall deadline stops a server that trickles bytes.
            response, body = await asyncio.wait_for(self._exchange(client, content), self.timeout)
        except (httpx.TimeoutException, asyncio.TimeoutError):
            raise _RetryableError(f"no response within {self.timeout:g} s") from None
        except httpx.ConnectError as exc:
            raise _RetryableError(f"cannot connect ({exc or type(exc).__name__}); is the server running?") from None
        except httpx.TransportError as exc:
            raise _RetryableError(f"connection lost ({type(exc).__name__}: {exc})") from None
        status = response.status_code
        text = body.decode("utf-8", errors="replace")
        if status == 200:
            try:
                data = json.loads(body)
            except (ValueError, RecursionError):
                raise _RetryableError(f"malformed JSON in the response: {self._clip(text, 120)!r}") from None
            if not isinstance(data, dict):
                raise _RetryableError(f"unexpected response: {self._clip(text, 120)!r}")
            return data
        message = self._clip(_server_message(body, text, response.reason_phrase), 500)
        if status in (400, 422, 500) and "logprob" in message.lower():
            raise _RejectedError(status, message)  # not retried: asked again without logprobs
        if status == 500 and _about_format(message):
            raise _RejectedError(status, message)  # some servers answer 500 to a response format they lack
        if status in _RETRY_STATUS or status >= 500:
            raise _RetryableError(f"HTTP {status}: {message}", _retry_after(response.headers.get("retry-after")))
        raise _RejectedError(status, message)

    async def _exchange(self, client: httpx.AsyncClient, content: bytes) -> tuple[httpx.Response, bytes]:
        """Send the request; the response and its body, inflated, of at most MAX_RESPONSE_BYTES."""
        request = client.build_request("POST", "chat/completions", content=content, headers=_JSON, params=self._params)
        response = await client.send(request, stream=True)
        try:
            if response.is_stream_consumed:  # a transport that built the whole body itself (httpx.MockTransport)
                body = response.content
                if len(body) > MAX_RESPONSE_BYTES:
                    raise _RetryableError(f"the response is larger than {MAX_RESPONSE_BYTES:,} bytes; refused")
                return response, body
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            inflate = _Inflater(encoding)
            async for chunk in response.aiter_raw():
                inflate.feed(chunk)
            return response, inflate.finish()
        finally:
            await response.aclose()

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.max_backoff, self.backoff * 2.0**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter spreads out clients that failed together

    def _generation(self, data: dict[str, Any], form: str, seconds: float) -> Generation:
        try:
            choice = data["choices"][0]
            message = choice["message"]
            text = message.get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            problem = f"{self.url} answered without choices[0].message: {self._clip(str(data), 200)}"
            raise BackendError(problem) from None
        if not text and message.get("refusal"):
            raise BackendError(f"the model refused: {self._clip(str(message['refusal']), 500)}")
        usage = data.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        return Generation(
            text=str(text),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            usage=Usage(
                int(usage.get("prompt_tokens") or 0),
                int(usage.get("completion_tokens") or 0),
                int(details.get("cached_tokens") or 0),
            ),
            timings={"request_s": seconds},
            schema_enforcement=_ENFORCEMENT[form],
        )

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:  # longest first, so no form leaves a piece of another
            text = text.replace(secret, "***")
        return text

    def _clip(self, text: str, limit: int) -> str:
        """Scrubbed, then cut: cutting first could leave part of a secret that no longer matches."""
        return self._scrub(text)[:limit]

    # -- the HTTP client, on the event-loop bridge ------------------------------------------------

    def _started(self) -> BlockingPortal:
        """The bridge's portal, with this backend's client open (from any thread, the bridge's own included)."""
        bridge = portal()
        with self._start_lock:
            if self._client is None:
                self._open()
                _open_backends.add(self)
        return bridge

    def _basic_token(self) -> str | None:
        if self._basic is None:
            return None
        return base64.b64encode(":".join(self._basic).encode()).decode()

    def _open(self) -> None:
        # Neither the client nor the semaphore binds to an event loop until first used on the bridge.
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        if self._basic is not None:
            headers = {"Authorization": f"Basic {self._basic_token()}"}
        headers["Accept-Encoding"] = _ENCODINGS
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        self._client = httpx.AsyncClient(
            base_url=self._base + "/",
            headers=headers,
            timeout=self.timeout,
            limits=limits,
            trust_env=False,
            transport=self._transport,
        )
        self._slots = asyncio.Semaphore(self.concurrency)

    def close(self) -> None:
        """Close connections; the next request opens them again."""
        with self._start_lock:
            client, self._client, self._slots = self._client, None, None
            _open_backends.discard(self)
        if client is not None:
            portal().call(client.aclose)

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


_open_backends: weakref.WeakSet[OpenAIBackend] = weakref.WeakSet()


@atexit.register  # registered after the bridge's own exit hook, so it runs before the loop stops
def _close_all() -> None:
    for backend in list(_open_backends):
        backend.close()


def _scores(data: Mapping[str, Any], schema: Mapping[str, Any]) -> tuple[bool, Scores | None]:
    """Whether the answer carried ``choices[0].logprobs.content``, and the scores derived from it."""
    try:
        content = data["choices"][0]["logprobs"]["content"]
        tokens = [
            (
                str(t["token"]),
                float(t["logprob"]),
                {str(a["token"]): float(a["logprob"]) for a in t.get("top_logprobs") or []},
            )
            for t in content
        ]
    except (KeyError, IndexError, TypeError, ValueError):
        return False, None
    return bool(tokens), scores_from_logprobs(tokens, schema) if tokens else None


def _public(url: str) -> str:
    """``url`` without user, password, query or fragment."""
    parts = urlsplit(_without_credentials(url))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _without_credentials(url: str) -> str:
    """``url`` without user, password, query (sent as request parameters instead) or fragment."""
    parts = urlsplit(url.strip())
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _clean_key(key: str | None) -> str | None:
    """The key without surrounding whitespace (a file or a secret mount often ends in a newline).

    Whitespace or control characters inside it cannot be sent in a header, and
    httpx's error would quote the whole key: refuse it, without showing it.
    """
    if key is None:
        return None
    key = key.strip()
    if any(not ch.isprintable() or ch.isspace() for ch in key) or not key.isascii():
        raise ConfigurationError(
            "the API key contains spaces, control or non-ASCII characters; check how it was read (the key is not shown)"
        )
    return key or None


def _escaped_forms(secrets: Any) -> set[str]:
    """Each secret as it may appear in text: raw, repr- and JSON-escaped, URL-quoted."""
    forms: set[str] = set()
    for secret in secrets:
        forms |= {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
                  quote(secret, safe=""), quote_plus(secret, safe="")}  # fmt: skip
    return {form for form in forms if len(form) > 3}


class _Inflater:
    """Collects a body as it arrives, inflating gzip or deflate in bounded steps, up to MAX_RESPONSE_BYTES."""

    def __init__(self, encoding: str) -> None:
        if encoding in ("", "identity"):
            self._inflate: Any = None
        elif encoding in ("gzip", "x-gzip", "deflate"):
            self._inflate = zlib.decompressobj(wbits=47)  # 47: a gzip or zlib header, detected
            self._raw_deflate = encoding == "deflate"  # some servers send deflate without the zlib header
        else:
            raise _RetryableError(f"the response is {encoding}-encoded; only {_ENCODINGS} is accepted")
        self._parts: list[bytes] = []
        self._size = 0
        self._started = False

    def _add(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > MAX_RESPONSE_BYTES:
            raise _RetryableError(f"the response is larger than {MAX_RESPONSE_BYTES:,} bytes; refused")
        self._parts.append(data)

    def feed(self, chunk: bytes) -> None:
        if self._inflate is None:
            self._add(chunk)
            return
        data = chunk
        while data:
            try:
                piece = self._inflate.decompress(data, MAX_RESPONSE_BYTES - self._size + 1)
            except zlib.error as exc:
                if self._raw_deflate and not self._started:
                    self._inflate, self._raw_deflate = zlib.decompressobj(wbits=-15), False
                    continue
                raise _RetryableError(f"the compressed response is corrupt ({exc})") from None
            self._started = True
            self._add(piece)
            data = self._inflate.unconsumed_tail

    def finish(self) -> bytes:
        if self._inflate is not None:
            try:
                self._add(self._inflate.flush())
            except zlib.error as exc:
                raise _RetryableError(f"the compressed response is corrupt ({exc})") from None
        return b"".join(self._parts)


def _server_message(body: bytes, text: str, reason: str) -> str:
    """The server's own explanation: ``error.message``, FastAPI's ``detail``, or the body.

    Uncut: the caller scrubs secrets, then cuts.
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return text.strip() or reason
    if isinstance(data, Mapping):
        error = data.get("error")
        if isinstance(error, Mapping) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if data.get("detail"):
            return _dumps(data["detail"])
        if data.get("message"):
            return str(data["message"])
    return _dumps(data)


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value)
    except (ValueError, RecursionError):
        return "(unprintable)"


def _strict_compatible(schema: Any) -> bool:
    """Whether strict mode can take ``schema``: every object closed, with all its properties required.

    Strict servers (OpenAI's) reject anything else; such a schema goes out with
    ``strict: false`` rather than costing a rejected request.
    """
    if isinstance(schema, Mapping):
        properties = schema.get("properties")
        if isinstance(properties, Mapping) and (
            set(schema.get("required", ())) != set(properties) or schema.get("additionalProperties", True) is not False
        ):
            return False
        return all(_strict_compatible(value) for value in schema.values())
    if isinstance(schema, list):
        return all(_strict_compatible(item) for item in schema)
    return True


def _about_format(message: str) -> bool:
    lowered = message.lower()
    return any(word in lowered for word in _FORMAT_WORDS)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number or an HTTP date)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), _MAX_WAIT)


def from_uri(rest: str) -> OpenAIBackend:
    """``openai:http://host:port/v1#model``; the key comes from the environment."""
    url, _, model = rest.partition("#")
    if not url:
        raise ConfigurationError("write openai:<base URL>#<model>, e.g. openai:http://127.0.0.1:8080/v1#smollm2")
    return OpenAIBackend(url, model or "default")
