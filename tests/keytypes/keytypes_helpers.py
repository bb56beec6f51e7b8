"""Independent checks for the key-type tests: OpenSSL's command line and test materials."""
from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from kms_core import keytypes
from kms_core.keytypes.base import Material

OPENSSL_HASH = {"SHA_256": "sha256", "SHA_384": "sha384", "SHA_512": "sha512"}


def material(spec: str, secret: bytes | None = None) -> Material:
    kt = keytypes.get(spec)
    return Material("1234abcd-12ab-34cd-56ef-1234567890ab", 1, secret if secret is not None else kt.generate())


@functools.cache
def second_material(spec: str) -> Material:
    """Another key of the same spec, made once per process (RSA 4096 generation is slow)."""
    return material(spec)


def openssl(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, timeout=60, check=False)


def write(tmp: Path, name: str, data: bytes) -> str:
    path = tmp / name
    path.write_bytes(data)
    return str(path)


def pem_public(spki_der: bytes) -> bytes:
    key = serialization.load_der_public_key(spki_der)
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def openssl_verify(tmp: Path, spki_der: bytes, algorithm: str, message: bytes, message_type: str,
                   signature: bytes) -> bool:
    """Verify a KMS signature with ``openssl dgst -verify`` (RAW) or ``openssl pkeyutl -verify``
    (DIGEST, and Ed25519's one-shot RAW), from the DER public key alone."""
    pub = write(tmp, "pub.der", spki_der)
    msg = write(tmp, "msg.bin", message)
    sig = write(tmp, "sig.bin", signature)
    if algorithm == "ED25519_SHA_512":
        args = ["pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey", pub, "-rawin", "-in", msg,
                "-sigfile", sig]
    else:
        md = OPENSSL_HASH[algorithm[-7:]]
        pss = algorithm.startswith("RSASSA_PSS")
        if message_type == "RAW":
            args = ["dgst", f"-{md}", "-keyform", "DER", "-verify", pub, "-signature", sig]
            if pss:
                args += ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"]
            args.append(msg)
        else:
            args = ["pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey", pub, "-in", msg,
                    "-sigfile", sig, "-pkeyopt", f"digest:{md}"]
            if pss:
                args += ["-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", "rsa_pss_saltlen:digest"]
    done = openssl(*args)
    return done.returncode == 0 and (b"Verified OK" in done.stdout or b"Verified Successfully" in done.stdout)


def openssl_oaep_encrypt(tmp: Path, spki_der: bytes, algorithm: str, plaintext: bytes) -> bytes:
    md = "sha1" if algorithm == "RSAES_OAEP_SHA_1" else "sha256"
    pub = write(tmp, "pub.der", spki_der)
    done = openssl("pkeyutl", "-encrypt", "-pubin", "-keyform", "DER", "-inkey", pub,
                   "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", f"rsa_oaep_md:{md}",
                   "-pkeyopt", f"rsa_mgf1_md:{md}", stdin=plaintext)
    assert done.returncode == 0, done.stderr
    return done.stdout


def openssl_oaep_decrypt(tmp: Path, pkcs8_der: bytes, algorithm: str, ciphertext: bytes) -> bytes:
    md = "sha1" if algorithm == "RSAES_OAEP_SHA_1" else "sha256"
    key = write(tmp, "key.der", pkcs8_der)
    done = openssl("pkeyutl", "-decrypt", "-keyform", "DER", "-inkey", key,
                   "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", f"rsa_oaep_md:{md}",
                   "-pkeyopt", f"rsa_mgf1_md:{md}", stdin=ciphertext)
    assert done.returncode == 0, done.stderr
    return done.stdout


def openssl_derive(tmp: Path, pkcs8_der: bytes, peer_spki_der: bytes) -> bytes:
    key = write(tmp, "key.der", pkcs8_der)
    peer = write(tmp, "peer.der", peer_spki_der)
    done = openssl("pkeyutl", "-derive", "-keyform", "DER", "-inkey", key, "-peerform", "DER", "-peerkey", peer)
    assert done.returncode == 0, done.stderr
    return done.stdout
