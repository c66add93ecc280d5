"""SSRF guard: web and CSV-by-URL refuse private addresses, on the first hop, on redirects and
after DNS rebinding."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tasks.errors import SourceError
from tasks.ingest.sources import http
from tests.sources.conftest import ingest, query, write_sources
from tests.sources.servers import LocalServer, Reply

PUBLIC = "93.184.216.34"
#: A loopback address the tests treat as public, so a local server can stand in for a public site.
STAND_IN = "127.0.0.2"


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names the tests resolve, for everyone (guard and connections alike): ``name -> answers``,
    one per lookup, the last repeated. ``127.0.0.2`` counts as a public address."""
    answers: dict[str, list[str]] = {}
    real_resolve = socket.getaddrinfo
    real_blocked = http.is_blocked_address

    def resolve(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            queue = answers[host]
            address = queue.pop(0) if len(queue) > 1 else queue[0]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real_resolve(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    monkeypatch.setattr(
        http, "is_blocked_address", lambda a: str(a) != STAND_IN and real_blocked(a)
    )
    return answers


@pytest.fixture
def public_site(fake_dns: dict[str, list[str]]) -> Iterator[LocalServer]:
    """``http://public.test:<port>``: a "public" site whose ``/redirect?to=URL`` answers a 302."""
    server = LocalServer(host=STAND_IN)
    server.routes["/redirect"] = lambda request: Reply(
        302, b"", headers={"Location": request.query["to"]}, content_type="text/plain"
    )
    server.routes["/items.csv"] = lambda request: Reply(200, b"id\n1\n", content_type="text/csv")
    fake_dns["public.test"] = [STAND_IN]
    server.start()
    yield server
    server.stop()


def web(url: str) -> str:
    return f"""
sources:
  - name: site
    kind: web
    seeds: ["{url}"]
    # Domains allowed on purpose: the address guard must hold even where the domain rules allow.
    allowed_domains: [public.test, localhost, 127.0.0.1, 169.254.169.254]
    respect_robots_txt: false
    delay_s: 0
"""


def csv_url(url: str) -> str:
    return f"""
sources:
  - name: files
    kind: csv
    http: {{max_attempts: 1}}
    resources:
      - table: items
        path: "{url}"
        primary_key: id
"""


@pytest.mark.parametrize("kind", ["web", "csv"])
def test_private_address_refused_without_a_request(
    kind: str,
    file_server: tuple[LocalServer, Path],
    env: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server, root = file_server
    (root / "items.csv").write_text("id\n1\n")
    (root / "index.html").write_text("<html><title>x</title></html>")
    text = web(f"{server.url}/index.html") if kind == "web" else csv_url(f"{server.url}/items.csv")
    sources = write_sources(tmp_path, text)
    with pytest.raises(SourceError, match="non-public address 127.0.0.1"):
        ingest(env, sources, "site" if kind == "web" else "files")
    assert server.requests == []


@pytest.mark.parametrize(
    "target", ["http://127.0.0.1:{port}/items.csv", "http://169.254.169.254/latest/meta-data/"]
)
@pytest.mark.parametrize("kind", ["web", "csv"])
def test_redirect_to_private_address_refused(
    kind: str,
    target: str,
    public_site: LocalServer,
    file_server: tuple[LocalServer, Path],
    env: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    private, root = file_server
    (root / "items.csv").write_text("id\n1\n")
    hop = target.format(port=private.port)
    start = f"http://public.test:{public_site.port}/redirect?to={hop}"
    sources = write_sources(tmp_path, web(start) if kind == "web" else csv_url(start))

    with pytest.raises(SourceError, match="Refusing .*non-public address"):
        ingest(env, sources, "site" if kind == "web" else "files")

    assert [r.path for r in public_site.requests] == ["/redirect"]
    assert private.requests == []  # the private hop was never fetched


def test_dns_rebinding_cannot_reach_a_private_address(
    fake_dns: dict[str, list[str]], env: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    """A name that answers "public" to the guard and then "private" (DNS rebinding): the
    connection goes to the address the guard checked, never to the second answer."""
    public = LocalServer(host=STAND_IN)
    public.routes["/items.csv"] = lambda request: Reply(200, b"id\n1\n2\n", content_type="text/csv")
    private = LocalServer(host="127.0.0.1", port=public.port)  # same port, private address
    private.routes["/items.csv"] = lambda request: Reply(200, b"id\n666\n", content_type="text/csv")
    fake_dns["rebind.test"] = [STAND_IN, "127.0.0.1"]
    public.start()
    private.start()
    try:
        url = f"http://rebind.test:{public.port}/items.csv"
        result = ingest(env, write_sources(tmp_path, csv_url(url)), "files")
    finally:
        public.stop()
        private.stop()

    assert private.requests == []
    (request,) = public.requests
    assert request.headers["host"] == f"rebind.test:{public.port}"  # the name, not the address
    assert result.rows_by_table == {"items": 2}
    assert query(database_url, "select id from raw_data.items order by id") == [("1",), ("2",)]


def test_https_keeps_the_name_for_sni_and_certificate_check(
    fake_dns: dict[str, list[str]],
) -> None:
    """The pool connects to the checked address; TLS still verifies the host name."""
    fake_dns["secure.test"] = [PUBLIC]
    request = requests.Request("GET", "https://secure.test/data.csv").prepare()
    host, pool = http.PinnedAddressAdapter().build_connection_pool_key_attributes(request, True)
    assert (host["host"], host["port"]) == (PUBLIC, None)
    assert pool["server_hostname"] == pool["assert_hostname"] == "secure.test"
    assert request.headers["Host"] == "secure.test"


def test_metadata_and_private_ranges_are_blocked() -> None:
    for url in (
        "http://169.254.169.254/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://[::1]/",
        "http://0.0.0.0/",
        "file:///etc/passwd",
    ):
        with pytest.raises(http.BlockedAddressError):
            http.check_public_url(url)
    http.check_public_url(f"http://{PUBLIC}/")  # a public literal passes (no DNS needed)


# The special-purpose address registries, copied from IANA (iana-ipv4-special-registry and
# iana-ipv6-special-registry): (block, name, RFCs, globally reachable). "N/A" there (a block whose
# reachability depends on its sub-blocks, or a deprecated one) counts as not reachable. The
# guard must refuse every block that is not globally reachable and let the others through. Two
# addresses are checked per block: its first address and its last.
IPV4_SPECIAL = [
    ("0.0.0.0/8", "This network", "RFC 791", False),
    ("0.0.0.0/32", "This host on this network", "RFC 1122", False),
    ("10.0.0.0/8", "Private-Use", "RFC 1918", False),
    ("100.64.0.0/10", "Shared Address Space", "RFC 6598", False),
    ("127.0.0.0/8", "Loopback", "RFC 1122", False),
    ("169.254.0.0/16", "Link Local", "RFC 3927", False),
    ("172.16.0.0/12", "Private-Use", "RFC 1918", False),
    ("192.0.0.0/24", "IETF Protocol Assignments", "RFC 6890", False),
    ("192.0.0.0/29", "IPv4 Service Continuity Prefix", "RFC 7335", False),
    ("192.0.0.8/32", "IPv4 dummy address", "RFC 7600", False),
    ("192.0.0.9/32", "Port Control Protocol Anycast", "RFC 7723", True),
    ("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", "RFC 8155", True),
    ("192.0.0.170/32", "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050", False),
    ("192.0.0.171/32", "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050", False),
    ("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC 5737", False),
    ("192.31.196.0/24", "AS112-v4", "RFC 7535", True),
    ("192.52.193.0/24", "AMT", "RFC 7450", True),
    ("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "RFC 7526", False),
    ("192.88.99.2/32", "6a44-relay anycast address", "RFC 6751", False),
    ("192.168.0.0/16", "Private-Use", "RFC 1918", False),
    ("192.175.48.0/24", "Direct Delegation AS112 Service", "RFC 7534", True),
    ("198.18.0.0/15", "Benchmarking", "RFC 2544", False),
    ("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC 5737", False),
    ("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC 5737", False),
    ("240.0.0.0/4", "Reserved", "RFC 1112", False),
    ("255.255.255.255/32", "Limited Broadcast", "RFC 8190, RFC 919", False),
    # Not in the special-purpose registry but never a web server: multicast (RFC 5771).
    ("224.0.0.0/4", "Multicast", "RFC 5771", False),
]
IPV6_SPECIAL = [
    ("::1/128", "Loopback Address", "RFC 4291", False),
    ("::/128", "Unspecified Address", "RFC 4291", False),
    ("::ffff:0:0/96", "IPv4-mapped Address", "RFC 4291", False),
    ("64:ff9b:1::/48", "IPv4-IPv6 Translat. (local use)", "RFC 8215", False),
    ("100::/64", "Discard-Only Address Block", "RFC 6666", False),
    ("100:0:0:1::/64", "Dummy IPv6 Prefix", "RFC 9780", False),
    ("2001::/23", "IETF Protocol Assignments", "RFC 2928", False),
    ("2001::/32", "TEREDO", "RFC 4380, RFC 8190", False),
    ("2001:1::1/128", "Port Control Protocol Anycast", "RFC 7723", True),
    ("2001:1::2/128", "Traversal Using Relays around NAT Anycast", "RFC 8155", True),
    ("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", "RFC 9665", True),
    ("2001:2::/48", "Benchmarking", "RFC 5180, RFC Errata 1752", False),
    ("2001:3::/32", "AMT", "RFC 7450", True),
    ("2001:4:112::/48", "AS112-v6", "RFC 7535", True),
    ("2001:10::/28", "Deprecated (previously ORCHID)", "RFC 4843", False),
    ("2001:20::/28", "ORCHIDv2", "RFC 7343", True),
    ("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", "RFC 9374", True),
    ("2001:db8::/32", "Documentation", "RFC 3849", False),
    ("2620:4f:8000::/48", "Direct Delegation AS112 Service", "RFC 7534", True),
    ("3fff::/20", "Documentation", "RFC 9637", False),
    ("5f00::/16", "Segment Routing (SRv6) SIDs", "RFC 9602", False),
    ("fc00::/7", "Unique-Local", "RFC 4193, RFC 8190", False),
    ("fe80::/10", "Link-Local Unicast", "RFC 4291", False),
    # Not in the registry: deprecated site-local (RFC 3879) and multicast (RFC 4291).
    ("fec0::/10", "Site-Local (deprecated)", "RFC 3879", False),
    ("ff00::/8", "Multicast", "RFC 4291", False),
]
#: Blocks the registry marks globally reachable (or N/A) whose verdict is that of the IPv4
#: address they embed: NAT64's well-known prefix (RFC 6052) and 6to4 (RFC 3056).
EMBEDDING = [
    ("64:ff9b::{v4}", "IPv4-IPv6 Translat.", "RFC 6052"),
    ("2002:{hi}:{lo}::", "6to4", "RFC 3056"),
    ("2002:{hi}:{lo}:1:2:3:4:5", "6to4", "RFC 3056"),
    ("::ffff:{v4}", "IPv4-mapped Address", "RFC 4291"),
]


def _ends(block: str) -> list[str]:
    import ipaddress

    network = ipaddress.ip_network(block)
    return sorted({str(network[0]), str(network[-1])})


@pytest.mark.parametrize(
    ("address", "name", "reachable"),
    [
        pytest.param(a, f"{block} {name} ({rfcs})", reachable, id=f"{a}-{name}")
        for block, name, rfcs, reachable in IPV4_SPECIAL + IPV6_SPECIAL
        for a in _ends(block)
    ],
)
def test_special_purpose_registry(address: str, name: str, reachable: bool) -> None:
    import ipaddress

    assert http.is_blocked_address(ipaddress.ip_address(address)) is not reachable, name


@pytest.mark.parametrize(
    ("v4", "public"),
    [
        ("169.254.169.254", False),  # cloud metadata
        ("100.100.100.200", False),  # shared address space (Alibaba's metadata service)
        ("10.1.2.3", False),
        ("127.0.0.1", False),
        ("192.168.0.1", False),
        ("0.0.0.0", False),
        ("8.8.8.8", True),
        ("93.184.216.34", True),
    ],
)
@pytest.mark.parametrize(("pattern", "name", "rfc"), EMBEDDING)
def test_embedded_ipv4_decides(v4: str, public: bool, pattern: str, name: str, rfc: str) -> None:
    import ipaddress

    packed = ipaddress.IPv4Address(v4).packed
    text = pattern.format(
        v4=v4, hi=packed[:2].hex(), lo=packed[2:].hex()
    )  # e.g. 2002:a9fe:a9fe:: embeds 169.254.169.254
    address = ipaddress.ip_address(text)
    assert http.is_blocked_address(address) is not public, f"{text} ({name}, {rfc}) embeds {v4}"


@pytest.mark.parametrize(
    "teredo",
    [
        # Teredo (RFC 4380) embeds the server's IPv4 and the client's (inverted): never reachable
        # as such (2001::/32 is not globally reachable), whatever it embeds.
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # RFC 4380's example: public server and client
        "2001:0:a9fe:a9fe::5601:5601",  # server 169.254.169.254, client 169.254.169.254 (~)
    ],
)
def test_teredo_is_refused(teredo: str) -> None:
    import ipaddress

    assert http.is_blocked_address(ipaddress.ip_address(teredo))


def test_shared_and_6to4_urls_are_refused() -> None:
    for url in ("http://100.100.100.200/latest/meta-data/", "http://[2002:a9fe:a9fe::]/"):
        with pytest.raises(http.BlockedAddressError, match="non-public address"):
            http.check_public_url(url)
