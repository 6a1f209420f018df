"""Real HTTP and HTTPS servers on 127.0.0.1 for the uptime probe tests and benchmark (loopback only, bounded).

``Sites`` starts one plain HTTP server and, with ``tls=True``, HTTPS servers whose certificates are made here
with trustme: leaves of a private CA (``ca_pem``, what PROBE_CA_BUNDLE is given) expiring in 2, 10 and 90
days, and a self-signed certificate nobody trusts (30 days). Every server answers the same paths:

* ``/ok`` 200 ``{"status": "healthy"}``; ``/degraded`` 200 ``{"status": "degraded"}``; ``/unhealthy`` 503
* ``/slow/<ms>`` the same as /ok after ``ms`` milliseconds (at most ``MAX_DELAY_MS``)
* ``/close`` closes the connection without answering
* ``/redirect/<n>`` 302 to ``/redirect/<n-1>``; ``/redirect/0`` is /ok
* ``/redirect-to/<port>/<path>`` 302 to ``http://127.0.0.1:<port>/<path>`` (another server)
"""

from __future__ import annotations

import datetime
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_DELAY_MS = 5000


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _answer(self, status: int, body: dict | None = None, headers: dict | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.close_connection = True

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.server.requests.append((path, dict(self.headers)))
        if path == "/ok":
            self._answer(200, {"status": "healthy"})
        elif path == "/degraded":
            self._answer(200, {"status": "degraded", "checks": {"db": {"status": "healthy"}}})
        elif path == "/unhealthy":
            self._answer(503, {"status": "unhealthy"})
        elif path.startswith("/slow/"):
            time.sleep(min(int(path.rsplit("/", 1)[1]), MAX_DELAY_MS) / 1000)
            self._answer(200, {"status": "healthy"})
        elif path == "/close":
            self.close_connection = True
            self.connection.close()
        elif path.startswith("/redirect-to/"):  # /redirect-to/<port>/<path>: to another server on 127.0.0.1
            _, _, port, rest = path.split("/", 3)
            self._answer(302, {}, {"Location": f"http://127.0.0.1:{int(port)}/{rest}"})
        elif path.startswith("/redirect/"):
            left = int(path.rsplit("/", 1)[1])
            if left <= 0:
                self._answer(200, {"status": "healthy"})
            else:
                self._answer(302, {}, {"Location": f"/redirect/{left - 1}"})
        else:
            self._answer(404, {"error": "not found"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, dict]] = []
        self.context = context

    def get_request(self):
        sock, address = super().get_request()
        if self.context is not None:  # the handshake on the request's thread, not the accepting one
            sock = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def finish_request(self, request, client_address) -> None:
        try:
            if isinstance(request, ssl.SSLSocket):
                request.settimeout(10)
                request.do_handshake()
            super().finish_request(request, client_address)
        except (ssl.SSLError, OSError):
            pass  # a client that refused our certificate

    def handle_error(self, request, client_address) -> None:
        pass

    @property
    def base(self) -> str:
        scheme = "https" if self.context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.server_address[1]}"


def _self_signed(days: int) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a self-signed certificate for 127.0.0.1 valid ``days`` more days."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self-signed probe target")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


class Sites:
    """The servers; ``http`` is the plain one, ``https[days]`` the private CA's leaves, ``untrusted`` the
    self-signed one. A context manager: everything is shut down on exit."""

    LEAF_DAYS = (2, 10, 90)
    UNTRUSTED_DAYS = 30

    def __init__(self, tls: bool = True) -> None:
        self.servers: list[_Server] = []
        self.http = self._start(None)
        self.https: dict[int, _Server] = {}
        self.ca_pem = ""
        if tls:
            import trustme

            ca = trustme.CA()
            self.ca_pem = ca.cert_pem.bytes().decode()
            now = datetime.datetime.now(datetime.UTC)
            for days in self.LEAF_DAYS:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ca.issue_cert("127.0.0.1", not_after=now + datetime.timedelta(days=days)).configure_cert(context)
                self.https[days] = self._start(context)
            cert, key = _self_signed(self.UNTRUSTED_DAYS)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            import tempfile
            from pathlib import Path

            with tempfile.TemporaryDirectory() as directory:
                (Path(directory) / "cert.pem").write_bytes(cert)
                (Path(directory) / "key.pem").write_bytes(key)
                context.load_cert_chain(Path(directory) / "cert.pem", Path(directory) / "key.pem")
            self.untrusted = self._start(context)

    def _start(self, context: ssl.SSLContext | None) -> _Server:
        server = _Server(context)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        self.servers.append(server)
        return server

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> Sites:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
