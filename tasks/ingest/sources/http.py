"""One HTTP session for every source: one retry layer, fail-fast errors, SSRF guard.

* **Retries** follow the project's one policy (:mod:`tasks.retry`): what is transient (HTTP 408,
  409, 425, 429, 5xx other than 501/505, connection errors, timeouts), and how long to wait
  (exponential backoff from ``http.backoff_s`` with full jitter, never shorter than the server's
  ``Retry-After``, capped at ``http.max_backoff_s``); ``http.max_attempts`` tries per request in
  all. tenacity runs them inside :meth:`SafeSession.send`, the one method every request and
  redirect hop of requests goes through, so dlt's REST client, the crawler and the CSV reader
  share it without knowing.
* **This is the only retry layer of a source's requests.** When the attempts run out,
  :class:`HttpRetriesExhausted` is raised marked final (:func:`tasks.retry.give_up`): the Prefect
  ``ingest-source`` task does not retry the load again, which would multiply the tries (3 task
  retries x 5 attempts for every page). Its Prefect retries are for what no client retried: a
  dropped warehouse connection, a crashed worker. A web page that still fails becomes a dead
  letter and the crawl goes on; a failing seed or REST page fails the load.
* Any other status from 400 up fails at once with the URL and status (:class:`HttpStatusError`).
* With ``check_json`` (REST APIs), a response body that is not JSON (an HTML error page served
  with 200, a truncated document) fails with the method, URL, status, content type and the
  first bytes of the body (:class:`MalformedResponseError`), not with the parser's
  ``Expecting value: line 1 column 1``.
* Every URL and message it produces goes through :func:`tasks.ingest.sources.redaction.redact`: no
  credential (query parameter, userinfo, configured secret) reaches an error or a log.
* With ``allow_private=False`` every request, and every redirect hop (requests sends each hop
  through the session's adapter), is refused when its host resolves to an address that is not
  globally reachable (:func:`is_blocked_address`: IANA's special-purpose registries, including
  the IPv4 address that 6to4, Teredo, NAT64 and IPv4-mapped forms embed, and cloud-metadata
  addresses). The name is resolved once, by the
  check, and the connection goes to the address that passed it (:class:`PinnedAddressAdapter`),
  so a DNS server that answers "public" to the check and "private" to the connection (DNS
  rebinding) gets nowhere.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.hooks import default_hooks, dispatch_hook
from tenacity import RetryCallState

from tasks.errors import SourceError
from tasks.ingest.sources import redaction
from tasks.ingest.sources.config import HttpOptions
from tasks.ingest.sources.redaction import redact
from tasks.retry import give_up, is_transient, is_transient_status, retrying

logger = logging.getLogger(__name__)

#: Addresses clouds serve instance metadata (and credentials) on.
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)

# IANA's special-purpose address registries (iana-ipv4-special-registry,
# iana-ipv6-special-registry), written out because ``ipaddress.is_global`` follows them only
# from Python 3.12.4/3.11.10 on: this project's 3.11.7 calls 192.0.0.8, 3fff::/20, 5f00::/16 and
# 64:ff9b:1::/48 global, and 2001:1::1 (PCP anycast) not. Blocks marked "N/A" there count as not
# globally reachable. tests/sources/test_ssrf.py table-tests every entry.
_NOT_GLOBAL = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b:1::/48", "100::/64", "100:0:0:1::/64",
        "2001::/23", "2001:db8::/32", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10",
        "fec0::/10", "ff00::/8",
    )
)  # fmt: skip
#: Sub-blocks of the above that the registries mark globally reachable.
_GLOBAL_EXCEPTIONS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "192.0.0.9/32", "192.0.0.10/32", "2001:1::1/128", "2001:1::2/128", "2001:1::3/128",
        "2001:3::/32", "2001:4:112::/48", "2001:20::/28", "2001:30::/28",
    )
)  # fmt: skip
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses a connection to ``address`` really reaches: IPv4-mapped (RFC 4291),
    6to4 (RFC 3056), Teredo server and client (RFC 4380) and NAT64 (RFC 6052, RFC 8215)."""
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in _NAT64_WELL_KNOWN:
        found.append(ipaddress.IPv4Address(address.packed[12:]))
    if address.packed[:6] == bytes.fromhex("0064ff9b0001"):
        # RFC 6052's /48 layout: IPv4 bits in octets 6-7 and 9-10 (octet 8 is reserved, "u").
        packed = address.packed
        found.append(ipaddress.IPv4Address(packed[6:8] + packed[9:11]))
    return found


def is_blocked_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether sources may not connect to ``address`` (unless they allow private addresses).

    Only globally reachable addresses pass: not in a special-purpose block the IANA registries
    mark otherwise, ``ipaddress``' ``is_global``, and, for IPv6 forms that embed an IPv4
    address (mapped, 6to4, Teredo, NAT64), that IPv4 address passes too.
    """
    if address in METADATA_ADDRESSES:
        return True
    if isinstance(address, ipaddress.IPv6Address) and any(
        is_blocked_address(v4) for v4 in embedded_ipv4(address)
    ):
        return True
    if any(address in network for network in _GLOBAL_EXCEPTIONS):
        return False
    if isinstance(address, ipaddress.IPv6Address) and (
        address in _NAT64_WELL_KNOWN or address.ipv4_mapped is not None
    ):
        return False  # these reach the IPv4 address they embed, which passed above
    if any(address in network for network in _NOT_GLOBAL):
        return True
    return not address.is_global or address.is_reserved or address.is_multicast


class HttpStatusError(SourceError):
    """The server answered with a status a retry cannot fix (from 400 up, not transient)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class HttpRetriesExhausted(SourceError):
    """Transient failures (429, 5xx, timeouts) went on past ``http.max_attempts``.

    The failure is transient by nature (``retryable``), but every one raised by the session is
    marked final with :func:`~tasks.retry.give_up`: its retry layer already tried (module doc).
    """

    retryable = True


class MalformedResponseError(SourceError):
    """The server answered 2xx with a body that does not parse."""


class BlockedAddressError(SourceError):
    """A URL (or a redirect) points at an address sources may not reach (SSRF guard)."""


def check_url_scheme(url: str) -> None:
    """Raise :class:`BlockedAddressError` unless ``url`` is an absolute http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BlockedAddressError(
            f"Refusing {redact(url)}: only absolute http(s) URLs may be fetched."
        )


def check_public_url(url: str) -> str:
    """The address to connect to for ``url``: its host's first address, once every address the
    host resolves to has been found public.

    Raises:
        BlockedAddressError: the scheme is not http(s), the host does not resolve, or an address
            is loopback/private/link-local/metadata/reserved.
    """
    check_url_scheme(url)
    parts = urlsplit(url)
    url = redact(url)  # from here on only in messages
    assert parts.hostname is not None  # checked above
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise BlockedAddressError(f"Refusing {url}: host does not resolve ({exc}).") from None
    addresses = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if is_blocked_address(address):
            raise BlockedAddressError(
                f"Refusing {url}: {parts.hostname} resolves to non-public address {address}. "
                "Set `allow_private_addresses: true` on this source only if you trust it."
            )
        addresses.append(address)
    if not addresses:
        raise BlockedAddressError(f"Refusing {url}: {parts.hostname} has no address.")
    first = addresses[0]
    return f"[{first}]" if first.version == 6 else str(first)


class PinnedAddressAdapter(HTTPAdapter):
    """Connects each request (and redirect hop) to the address :func:`check_public_url` vetted.

    The host name is resolved once, here; the connection pool is keyed by the vetted address,
    while the Host header, TLS SNI and the certificate check keep using the name (the technique
    of requests-hardened's ``IPFilterAdapter``).
    """

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[Any, Any]:  # requests' stubs type these as TypedDicts without the TLS keys
        host_params, typed_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        pool_kwargs: dict[str, Any] = dict(typed_kwargs)
        name = host_params["host"]
        address = check_public_url(str(request.url))
        # Set on every hop: a redirect's request is a copy that still carries the last Host.
        request.headers["Host"] = urlsplit(str(request.url)).netloc.rpartition("@")[2]
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = name
            pool_kwargs["assert_hostname"] = name
        host_params["host"] = address
        return host_params, pool_kwargs


class _TransientStatus(Exception):
    """A response with a transient status, raised inside an attempt so that tenacity retries it
    (``status_of``/``retry_after_of`` of :mod:`tasks.retry` read its ``response``)."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _retried(exc: BaseException) -> bool:
    """What the session retries: transport failures and transient statuses, as
    :func:`~tasks.retry.is_transient` judges them; never its own refusals (SSRF guard, a bad
    URL, a redirect loop), which the fallback of ``is_transient`` would call transient."""
    transport = isinstance(exc, requests.ConnectionError | requests.Timeout | _TransientStatus)
    return transport and is_transient(exc)


def _log_retry(method: str | None, url: str) -> Callable[[RetryCallState], None]:
    """tenacity ``before_sleep``: one warning per retry, the URL and error redacted."""

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        if isinstance(error, _TransientStatus):
            what = f"HTTP {error.response.status_code}"
        else:
            what = redact(str(error))
        logger.warning("%s %s: %s, retry in %.1fs", method, url, what, wait)

    return before_sleep


class SafeSession(requests.Session):
    """A requests session with the retry policy and SSRF guard described in the module doc."""

    def __init__(
        self,
        options: HttpOptions,
        allow_private: bool,
        sleep: Callable[[float], None] = time.sleep,
        check_json: bool = False,
    ) -> None:
        super().__init__()
        redaction.install()  # dlt's logger (its rest client logs request URLs)
        self.http_options = options
        self.allow_private = allow_private
        self.check_json = check_json
        self._sleep = sleep
        self.headers["User-Agent"] = options.user_agent
        self.max_redirects = 10
        if not allow_private:
            for prefix in ("http://", "https://"):
                self.mount(prefix, PinnedAddressAdapter())

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Send with retries. Each request and redirect hop is checked by the pinning adapter."""
        url = str(request.url)
        if not self.allow_private:
            check_url_scheme(url)
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.http_options.timeout_s
        # Response hooks (dlt's raise_for_status) would fire inside requests before our retry
        # logic sees the status: run them ourselves on the final response.
        hooks = request.hooks
        request.hooks = default_hooks()
        try:
            response = self._send_with_retries(request, url, **kwargs)
        finally:
            request.hooks = hooks
        if self.check_json and not kwargs.get("stream"):
            check_json_body(request, response)
        hooked: requests.Response = dispatch_hook(  # type: ignore[no-untyped-call]
            "response", hooks, response, **kwargs
        )
        return hooked

    def _send_with_retries(
        self, request: requests.PreparedRequest, url: str, **kwargs: Any
    ) -> requests.Response:
        url = redact(url)  # only for messages: the request keeps its real URL
        options = self.http_options
        policy = retrying(
            f"{request.method} {url}",
            attempts=options.max_attempts,
            base_s=options.backoff_s,
            max_wait_s=options.max_backoff_s,
            retry_on=_retried,
            sleep=self._sleep,
            before_sleep=_log_retry(request.method, url),
        )
        try:
            response: requests.Response = policy(self._attempt, request, **kwargs)
        except _TransientStatus as exc:
            attempts = policy.statistics.get("attempt_number", options.max_attempts)
            raise give_up(
                HttpRetriesExhausted(
                    f"{request.method} {url}: HTTP {exc.response.status_code} after {attempts} "
                    "attempts. The server keeps failing or rate limiting: retry later."
                )
            ) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            attempts = policy.statistics.get("attempt_number", options.max_attempts)
            raise give_up(
                HttpRetriesExhausted(
                    redact(
                        f"{request.method} {url}: {type(exc).__name__} after {attempts} "
                        f"attempts ({exc}). The server is down or slow: retry later or raise "
                        "`http.timeout_s`."
                    )
                )
            ) from None
        status = response.status_code
        if status >= 400:  # and not transient (the attempt raised those): final
            body = response.text[:200] if not kwargs.get("stream") else ""
            raise HttpStatusError(
                redact(
                    f"{request.method} {url}: HTTP {status} {response.reason}. "
                    f"{_hint(status)} {body}".strip()
                ),
                status=status,
            )
        return response

    def _attempt(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """One try: the response, or :class:`_TransientStatus` for tenacity to retry."""
        response = super().send(request, **kwargs)
        if is_transient_status(response.status_code):
            response.close()
            raise _TransientStatus(response)
        return response


#: Statuses whose body is empty by definition; dlt does not parse them.
_NO_BODY = frozenset({204, 205, 304})


def check_json_body(request: requests.PreparedRequest, response: requests.Response) -> None:
    """Raise :class:`MalformedResponseError` unless ``response``'s body parses as JSON.

    Whatever the ``Content-Type`` says: some APIs label JSON ``text/plain``, and a proxy's
    HTML error page arrives with status 200.
    """
    if request.method == "HEAD" or response.status_code in _NO_BODY:
        return
    try:
        response.json()
    except ValueError as exc:
        content_type = response.headers.get("Content-Type") or "no Content-Type"
        head = response.content[:200]
        shown = head.decode(response.encoding or "utf-8", errors="replace")
        raise MalformedResponseError(
            redact(
                f"{request.method} {request.url}: HTTP {response.status_code} ({content_type}) "
                f"with a body that is not valid JSON ({exc}); its first {len(head)} of "
                f"{len(response.content)} bytes: {shown!r}. The server, or a proxy or login page "
                "in between, answered something else than the API: check the URL and the "
                "credentials, or retry later."
            )
        ) from None


def _hint(status: int) -> str:
    if status in (401, 403):
        return "Check the source's credentials (SOURCES__<NAME>__...) and their permissions."
    if status == 404:
        return "Check the URL/path in the sources file."
    if status >= 500:
        return "The server does not support this request: check the source's URL and method."
    return "The request was rejected: check the source's options."
