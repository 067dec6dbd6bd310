"""The hub's test PKI: a CA, the server certificate and device certificates,
all kept in the data directory so that a restarted hub and its clients keep
trusting each other."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from defender_iot.errors import UserError

# QEMU guests reach the hub through guestfwd at 10.0.2.100, or the slirp
# gateway 10.0.2.2; the agent verifies whatever HostName its connection
# string names, normally localhost.
SERVER_NAMES: Tuple[str, ...] = ("localhost", "127.0.0.1", "::1", "10.0.2.100", "10.0.2.2")
VALID_DAYS = 3650


@dataclass(frozen=True)
class Pki:
    """Paths of the PKI files in a hub data directory."""

    data_dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.data_dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.data_dir / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.data_dir / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.data_dir / "server.key"

    @property
    def trusted_clients(self) -> Path:
        """Self-signed client certificates registered by file: OpenSSL must
        trust them for the handshake to finish; the registry then matches
        the thumbprint."""
        return self.data_dir / "trusted-clients.pem"

    @property
    def identities_dir(self) -> Path:
        return self.data_dir / "identities"

    def ensure(self, names: Tuple[str, ...] = ()) -> None:
        """Create the CA and the server certificate on first use; issue a new
        server certificate (same CA) when it lacks one of `names`."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.ca_cert.exists() or not self.ca_key.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "defender-iot emulated hub test CA")])
            cert = (_builder(name, name, key.public_key())
                    .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                    .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
                    .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                    .sign(key, hashes.SHA256()))
            _write_key(self.ca_key, key)
            _write_cert(self.ca_cert, cert)
            for stale in (self.server_cert, self.server_key):
                stale.unlink(missing_ok=True)
        wanted = [_general_name(n) for n in dict.fromkeys((*SERVER_NAMES, *names))]
        if not self.server_cert.exists() or not self.server_key.exists() or not set(wanted) <= self._server_names():
            sans = wanted
            key, cert = self._issue("localhost", sans, ExtendedKeyUsageOID.SERVER_AUTH)
            _write_key(self.server_key, key)
            _write_cert(self.server_cert, cert)

    def _server_names(self) -> set:
        cert = x509.load_pem_x509_certificate(self.server_cert.read_bytes())
        try:
            return set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        except x509.ExtensionNotFound:
            return set()

    def issue_client(self, common_name: str, stem: str) -> Tuple[Path, Path, str]:
        """A client certificate signed by the hub CA: (cert path, key path,
        SHA-1 thumbprint as IoT Hub shows it)."""
        self.ensure()
        key, cert = self._issue(common_name, [], ExtendedKeyUsageOID.CLIENT_AUTH)
        self.identities_dir.mkdir(exist_ok=True)
        cert_path = self.identities_dir / f"{stem}.pem"
        key_path = self.identities_dir / f"{stem}.key"
        _write_key(key_path, key)
        _write_cert(cert_path, cert)
        return cert_path, key_path, thumbprint(cert.public_bytes(serialization.Encoding.DER))

    def _issue(self, common_name: str, sans: List[x509.GeneralName], usage) -> Tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), None)
        ca = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        b = (_builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), ca.subject, key.public_key())
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()), critical=False))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, b.sign(ca_key, hashes.SHA256())

    def issued_by_ca(self, der: bytes) -> Optional[str]:
        """The certificate's common name if the hub CA signed it, else None."""
        ca = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        try:
            cert = x509.load_der_x509_certificate(der)
            if cert.issuer != ca.subject or cert.signature_hash_algorithm is None:
                return None
            ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes,  # type: ignore[call-arg]
                                   ec.ECDSA(cert.signature_hash_algorithm))
        except (InvalidSignature, ValueError, TypeError):
            return None
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else None

    def trust_client_cert(self, pem: bytes) -> str:
        """Register a client certificate the hub CA did not sign (self-signed):
        add it to the handshake trust list; returns its thumbprint."""
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError as e:
            raise UserError(f"client certificate: not a PEM certificate ({e})") from None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.trusted_clients, "ab") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        return thumbprint(cert.public_bytes(serialization.Encoding.DER))


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def thumbprint(der: bytes, algorithm: str = "sha1") -> str:
    """IoT Hub's X.509 thumbprint: upper-case hex digest of the DER form
    (SHA-1 by default; SHA-256 thumbprints are accepted too)."""
    return hashlib.new(algorithm, der).hexdigest().upper()


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS)))


def _write_key(path: Path, key) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp, path)
