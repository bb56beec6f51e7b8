"""`kms sign` / `kms verify` / `kms get-public-key` on the embedded engine; the signature is
checked by OpenSSL from the public key the CLI printed."""
from __future__ import annotations

import base64
import subprocess


def test_sign_get_public_key_verify_and_openssl(cli, tmp_path):
    key_id = cli("create-key", "--key-spec", "ECC_NIST_P256", "--key-usage", "SIGN_VERIFY",
                 "--query", "KeyMetadata.KeyId", "--output", "text").out.strip()
    msg = tmp_path / "msg.txt"
    msg.write_bytes(b"signed on the command line\n")
    signed = cli("sign", "--key-id", key_id, "--message", f"fileb://{msg}", "--signing-algorithm", "ECDSA_SHA_256",
                 "--query", "Signature", "--output", "text")
    assert signed.rc == 0, signed
    sig = tmp_path / "sig.der"
    sig.write_bytes(base64.b64decode(signed.out))
    pub = cli("get-public-key", "--key-id", key_id)
    assert pub.rc == 0, pub
    assert pub.json["KeySpec"] == "ECC_NIST_P256" and pub.json["SigningAlgorithms"] == ["ECDSA_SHA_256"]
    der = tmp_path / "pub.der"
    der.write_bytes(base64.b64decode(pub.json["PublicKey"]))
    done = subprocess.run(["openssl", "dgst", "-sha256", "-keyform", "DER", "-verify", str(der), "-signature",
                           str(sig), str(msg)], capture_output=True, timeout=60, check=False)
    assert done.returncode == 0 and b"Verified OK" in done.stdout, done

    ok = cli("verify", "--key-id", key_id, "--message", f"fileb://{msg}", "--signature", f"fileb://{sig}",
             "--signing-algorithm", "ECDSA_SHA_256", "--query", "SignatureValid", "--output", "text")
    assert (ok.rc, ok.out.strip()) == (0, "True")
    msg.write_bytes(b"tampered\n")
    bad = cli("verify", "--key-id", key_id, "--message", f"fileb://{msg}", "--signature", f"fileb://{sig}",
              "--signing-algorithm", "ECDSA_SHA_256")
    assert bad.rc == 255
    assert bad.err.startswith("An error occurred (KMSInvalidSignatureException) when calling the Verify operation")


def test_get_public_key_of_symmetric_key_is_one_line_error(cli):
    key_id = cli("create-key", "--query", "KeyMetadata.KeyId", "--output", "text").out.strip()
    res = cli("get-public-key", "--key-id", key_id)
    assert res.rc == 255
    assert res.err.startswith("An error occurred (UnsupportedOperationException) when calling the GetPublicKey")
    assert res.err.count("\n") == 1
