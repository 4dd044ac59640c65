"""The network side of `fashion serve`: the listening socket (bound before the model loads, so a busy
port fails at once), the Host allow-list against DNS rebinding, and HTTP protocol errors as JSON."""

from __future__ import annotations

import errno
import ipaddress
import json
import socket

from ..errors import FashionError

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
_WILDCARDS = ("0.0.0.0", "::", "")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port``; one-line :class:`FashionError` when it cannot be had."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise FashionError(f"cannot listen on {host}:{port}: unknown host ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = "the port is in use (another server listens there)" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise FashionError(f"cannot listen on {host}:{port}: {reason}; choose another --port") from None
    sock.set_inheritable(True)
    return sock


def default_allowed_hosts(host: str) -> tuple[str, ...]:
    """The Host names a request may carry when none are given: the bound address and localhost. Bound to
    every interface, any IP address (a rebinding attack needs a domain name) and this machine's name."""
    names = [*LOCAL_HOSTS]
    if host in _WILDCARDS:
        names += ["*ip", socket.gethostname().lower()]
    elif host.lower() not in names:
        names.append(host.lower())
    return tuple(names)


def host_name(header: str) -> str:
    """The host part of a Host header: port, brackets and a trailing dot removed, lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    if header.count(":") == 1:
        header = header.split(":", 1)[0]
    return header.rstrip(".")


def host_allowed(header: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a request's Host header names one of ``allowed`` ("*": any; "*ip": any IP address)."""
    if "*" in allowed or header is None:  # no Host header: HTTP/1.0, never a browser
        return True
    name = host_name(header)
    if name in allowed:
        return True
    if "*ip" in allowed:
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return False
    return False


def json_error_protocol():
    """uvicorn's HTTP protocol class with its 400 for a malformed request as one-line JSON, not text."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # pragma: no cover - httptools is optional for uvicorn
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base

    class JsonErrors(Base):
        def send_400_response(self, msg: str) -> None:
            body = json.dumps({"detail": f"bad request: {msg.rstrip('.')}"}).encode()
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                                 b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
                                 + body)
            self.transport.close()

    return JsonErrors
