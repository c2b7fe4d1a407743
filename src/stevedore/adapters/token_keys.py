"""Adapter: the asymmetric keys that sign registry tokens, and what verifiers need to trust them.

Keys are PEM private keys (EC P-256 for ES256, or RSA for RS256). An installation keeps several: the first signs new
tokens, every one verifies, so a new key can be put first while tokens signed by the old one run out. For each key we
publish a self-signed X.509 certificate (a PEM bundle other registries take as their `rootcertbundle`) and a JWKS.

The key id (`kid` in a token's header) is the libtrust fingerprint of the public key (the SHA-256 of its DER
SubjectPublicKeyInfo, first 240 bits in base32, in groups of four): CNCF Distribution looks trusted keys up by it.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

_PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN (?:EC |RSA )?PRIVATE KEY-----.*?-----END (?:EC |RSA )?PRIVATE KEY-----", re.S
)
CERTIFICATE_LIFETIME = datetime.timedelta(days=20 * 365)


class TokenKeyError(Exception):
    """A signing key cannot be used; the message says why."""


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


@dataclass(frozen=True)
class TokenSigningKey:
    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    algorithm: str  # ES256 or RS256
    kid: str
    certificate: x509.Certificate

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
        return self.private_key.public_key()

    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def jwk(self) -> dict[str, Any]:
        public_key = self.public_key
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            jwk = ECAlgorithm.to_jwk(public_key, as_dict=True)
        else:
            jwk = RSAAlgorithm.to_jwk(public_key, as_dict=True)
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        jwk.update({"kid": self.kid, "alg": self.algorithm, "use": "sig", "x5c": [base64.b64encode(der).decode()]})
        return jwk


def load_signing_key(pem: bytes, *, issuer: str) -> TokenSigningKey:
    try:
        private_key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise TokenKeyError(f"not an unencrypted PEM private key ({exc})") from exc
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise TokenKeyError("EC token keys must be on the P-256 curve (ES256)")
        algorithm = "ES256"
    elif isinstance(private_key, rsa.RSAPrivateKey):
        if private_key.key_size < 2048:
            raise TokenKeyError("RSA token keys must have at least 2048 bits")
        algorithm = "RS256"
    else:
        raise TokenKeyError("token keys must be EC P-256 (ES256) or RSA (RS256)")
    return TokenSigningKey(
        private_key, algorithm, libtrust_key_id(private_key.public_key()), _certificate(private_key, issuer)
    )


def split_pem_keys(text: str) -> list[bytes]:
    """The PEM private keys in `text`, in order (an environment variable may hold several, newest first)."""
    return [match.group(0).encode() for match in _PEM_PRIVATE_KEY.finditer(text)]


def generate_signing_key_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_new_signing_key(path: str) -> None:
    """Create `path` (mode 0600, never overwriting) holding a new ES256 key."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(generate_signing_key_pem())


def _certificate(private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, issuer: str) -> x509.Certificate:
    """A self-signed certificate for the key. Its dates and serial derive from the key alone, so every node of an
    installation publishes the same certificate subject, serial and dates for the same key."""
    public_der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashlib.sha256(public_der).digest()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{issuer[:40]} token signing key")])
    not_before = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(int.from_bytes(digest[:16], "big") >> 1)
        .not_valid_before(not_before)
        .not_valid_after(not_before + CERTIFICATE_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(private_key, hashes.SHA256())
    )
