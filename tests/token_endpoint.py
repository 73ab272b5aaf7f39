"""A real OAuth token endpoint for tests: HTTPS on loopback, its certificate made for 127.0.0.1.

It answers each POST with what `reply` says (a body, a status, a stall, a redirect) and keeps every
request it received, so tests assert on what the control plane really sent over the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST = "127.0.0.1"


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    stall_s: float = 0.0  # wait this long before answering


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class TokenEndpoint:
    port: int
    ca_file: str
    reply: Reply = field(default_factory=Reply)
    received: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}/oauth/token"

    def grant(self, **fields: object) -> None:
        """Answer the next requests with this JSON token response."""
        self.reply = Reply(body=json.dumps(fields).encode())


def self_signed(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) PEM files for 127.0.0.1, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "caracal test token endpoint")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "token-endpoint.pem", directory / "token-endpoint.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def _read_request(reader: asyncio.StreamReader) -> Received:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    request_line, *lines = head.split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Received(request_line.split(" ")[1], headers, dict(parse_qsl(body.decode())))


async def _answer(writer: asyncio.StreamWriter, reply: Reply) -> None:
    headers = {"Content-Type": reply.content_type, "Content-Length": str(len(reply.body)), **reply.headers}
    head = f"HTTP/1.1 {reply.status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(head.encode() + b"Connection: close\r\n\r\n" + reply.body)
    await writer.drain()


@contextlib.asynccontextmanager
async def token_endpoint(directory: Path) -> AsyncIterator[TokenEndpoint]:
    cert, key = self_signed(directory)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    endpoint = TokenEndpoint(port=0, ca_file=str(cert))
    serving: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            serving.add(task)  # type: ignore[arg-type]
        try:
            endpoint.received.append(await _read_request(reader))
            reply = endpoint.reply
            if reply.stall_s:
                await asyncio.sleep(reply.stall_s)
            await _answer(writer, reply)
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client gave up (a timeout test) or refused our certificate
        finally:
            writer.close()
            serving.discard(task)  # type: ignore[arg-type]

    server = await asyncio.start_server(serve, HOST, 0, ssl=tls)
    endpoint.port = server.sockets[0].getsockname()[1]
    try:
        yield endpoint
    finally:
        server.close()
        for task in list(serving):  # a stalled answer the client gave up on
            task.cancel()
        await server.wait_closed()
