"""Encrypted .env files (format ``kms-env v1``, specified in
docs/encrypted-env-format.md).

    #kms-env v1 {"context":{"LambdaFunctionName":"orders-api"},"key":"arn:aws:kms:…"}
    DB_PASSWORD=AQICAHh…            <- a Lambda-console-style value
    API_TOKEN=AQICAHh…
    #kms-env-mac v1 <base64 wrapped MAC key> <base64 HMAC-SHA256>

Names stay readable; each value is exactly what the Lambda console stores
(base64 KMS ciphertext under the header's context), so any line can be pasted
into a function's configuration.  The last line authenticates the header,
every name and value and their order with HMAC-SHA256 under a 256-bit key
from KMS GenerateDataKey, wrapped under the same KMS key.  Standard dotenv
readers skip the two ``#`` lines.
"""
from __future__ import annotations

import base64
import json
import re
import struct
from collections.abc import Iterable, Mapping
from typing import Any

from .core import (
    DEFAULT_KEY_ID,
    _is_client_failure,
    _kms_error,
    decrypt_value,
    encrypt_value,
    function_context,
    map_error,
    resolve_client,
    run_all,
)
from .errors import EnvFileFormatError, EnvFileTamperedError

__all__ = [
    "FORMAT_VERSION",
    "MAC_PURPOSE",
    "EncryptedEnv",
    "compute_mac",
    "decrypt_env_file",
    "encrypt_env_file",
    "load_env_file",
    "mac_input",
    "parse",
    "read_plain_env",
    "render",
    "verify_mac",
]

FORMAT_VERSION = 1
HEADER_PREFIX = "#kms-env v"
MAC_PREFIX = "#kms-env-mac v"
# Added to the MAC key's encryption context so that a wrapped MAC key can never
# be mistaken for (or swapped with) a value.
MAC_PURPOSE = ("kms-env-mac", "v1")
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_B64 = r"[A-Za-z0-9+/]+={0,2}"
_ENTRY_RE = re.compile(rf"([A-Za-z_][A-Za-z0-9_]*)=({_B64})\Z")
_HEADER_RE = re.compile(r"#kms-env v([0-9]+) (\{.*\})\Z")
_MAC_RE = re.compile(rf"#kms-env-mac v([0-9]+) ({_B64}) ({_B64})\Z")


class EncryptedEnv:
    """A parsed file: header text, context, key, entries, wrapped MAC key, MAC."""

    __slots__ = ("context", "entries", "header", "key", "mac", "wrapped_key")

    def __init__(self, header: str, context: dict[str, str], key: str | None,
                 entries: list[tuple[str, str]], wrapped_key: bytes, mac: bytes):
        self.header = header
        self.context = context
        self.key = key
        self.entries = entries
        self.wrapped_key = wrapped_key
        self.mac = mac

    def __repr__(self) -> str:
        return f"<EncryptedEnv names={[n for n, _ in self.entries]}>"


# --- the pure format ------------------------------------------------------------

def header_text(context: Mapping[str, str] | None, key: str | None) -> str:
    doc: dict[str, Any] = {"context": dict(context or {})}
    if key:
        doc["key"] = key
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def mac_input(header: str, entries: Iterable[tuple[str, str]], wrapped_key: bytes) -> bytes:
    """The bytes the MAC covers: a domain label, the header JSON exactly as
    written, the entry count, each name and value, and the wrapped MAC key, all
    length-prefixed (u32 big-endian) so no two files share an input."""
    entries = list(entries)
    parts = [b"kms-env-mac v1\n", _lp(header.encode("utf-8")), struct.pack(">I", len(entries))]
    for name, value in entries:
        parts.append(_lp(name.encode("ascii")))
        parts.append(_lp(value.encode("ascii")))
    parts.append(_lp(wrapped_key))
    return b"".join(parts)


def compute_mac(mac_key: bytes, header: str, entries: Iterable[tuple[str, str]],
                wrapped_key: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes, hmac  # noqa: PLC0415 - cold start: parse() needs no crypto
    h = hmac.HMAC(mac_key, hashes.SHA256())
    h.update(mac_input(header, entries, wrapped_key))
    return h.finalize()


def verify_mac(mac_key: bytes, env: EncryptedEnv) -> None:
    """Constant-time check; raises EnvFileTamperedError."""
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415 - cold start
    from cryptography.hazmat.primitives import hashes, hmac  # noqa: PLC0415 - cold start
    h = hmac.HMAC(mac_key, hashes.SHA256())
    h.update(mac_input(env.header, env.entries, env.wrapped_key))
    try:
        h.verify(env.mac)
    except InvalidSignature:
        raise EnvFileTamperedError(
            "the encrypted .env file was modified: its MAC does not match (a name, value, "
            "line order or the header changed, or a line was added or removed)") from None


def render(header: str, entries: Iterable[tuple[str, str]], wrapped_key: bytes,
           mac: bytes) -> str:
    lines = [f"{HEADER_PREFIX}{FORMAT_VERSION} {header}"]
    lines += [f"{name}={value}" for name, value in entries]
    lines.append(f"{MAC_PREFIX}{FORMAT_VERSION} {base64.b64encode(wrapped_key).decode()} "
                 f"{base64.b64encode(mac).decode()}")
    return "\n".join(lines) + "\n"


def _tampered(lineno: int, what: str) -> EnvFileTamperedError:
    # Never quote the line: it may hold a secret pasted by hand.
    return EnvFileTamperedError(f"line {lineno}: {what}")


def parse(text: str) -> EncryptedEnv:
    """Parse without any KMS call.  Raises EnvFileFormatError when this is not
    a ``kms-env`` file of a version we read, EnvFileTamperedError when its
    structure was altered."""
    if not isinstance(text, str):
        raise EnvFileFormatError("an encrypted .env file is text")
    lines = [(i, line.rstrip()) for i, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1)]
    lines = [(i, line) for i, line in lines if line]
    if not lines:
        raise EnvFileFormatError("empty file: not an encrypted .env file")
    header, context, key = _parse_header(*lines[0])
    entries, mac_line = _parse_entries(lines[1:])
    wrapped, mac = _parse_mac(*mac_line)
    return EncryptedEnv(header, dict(context), key, entries, wrapped, mac)


def _parse_header(lineno: int, first: str) -> tuple[str, dict, str | None]:
    m = _HEADER_RE.match(first)
    if m is None:
        if first.startswith(HEADER_PREFIX):
            raise EnvFileFormatError(f"line {lineno}: unreadable kms-env header")
        raise EnvFileFormatError(f"line {lineno}: not an encrypted .env file "
                                 f"(it must start with '{HEADER_PREFIX}{FORMAT_VERSION}')")
    if int(m.group(1)) != FORMAT_VERSION:
        raise EnvFileFormatError(f"kms-env format version {int(m.group(1))} is not supported "
                                 f"(this reader knows version {FORMAT_VERSION})")
    header = m.group(2)
    try:
        doc = json.loads(header)
    except ValueError:
        raise _tampered(lineno, "the header is not valid JSON") from None
    context, key = doc.get("context") if isinstance(doc, dict) else None, None
    if (not isinstance(context, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in context.items())):
        raise _tampered(lineno, "the header's context is not a map of strings")
    if isinstance(doc, dict) and "key" in doc:
        key = doc["key"]
        if not isinstance(key, str) or not key:
            raise _tampered(lineno, "the header's key is not a string")
    return header, context, key


def _parse_entries(lines: list[tuple[int, str]]) -> tuple[list[tuple[str, str]], tuple[int, str]]:
    entries: list[tuple[str, str]] = []
    seen: set[str] = set()
    mac_line = None
    for lineno, line in lines:
        if mac_line is not None:
            raise _tampered(lineno, "text after the MAC line")
        if line.startswith(MAC_PREFIX):
            mac_line = (lineno, line)
            continue
        m = _ENTRY_RE.match(line)
        if m is None:
            raise _tampered(lineno, "not a NAME=<base64 ciphertext> line")
        name = m.group(1)
        if name in seen:
            raise _tampered(lineno, f"{name} appears twice")
        seen.add(name)
        entries.append((name, m.group(2)))
    if mac_line is None:
        raise EnvFileTamperedError("the MAC line ('#kms-env-mac v1 …') is missing")
    return entries, mac_line


def _parse_mac(lineno: int, line: str) -> tuple[bytes, bytes]:
    m = _MAC_RE.match(line)
    if m is None or int(m.group(1)) != FORMAT_VERSION:
        raise _tampered(lineno, "unreadable MAC line")
    try:
        wrapped = base64.b64decode(m.group(2), validate=True)
        mac = base64.b64decode(m.group(3), validate=True)
    except ValueError:
        raise _tampered(lineno, "unreadable MAC line") from None
    if len(mac) != 32:
        raise _tampered(lineno, "the MAC is not 32 bytes")
    return wrapped, mac


# --- with KMS ---------------------------------------------------------------------

def _client(kms: Any) -> tuple[Any, bool]:
    if kms is not None:
        return kms, bool(getattr(kms, "remote", True))
    return resolve_client()


def _mac_context(context: Mapping[str, str]) -> dict[str, str]:
    ctx = dict(context)
    ctx[MAC_PURPOSE[0]] = MAC_PURPOSE[1]
    return ctx


def encrypt_env_file(entries: Iterable[tuple[str, str]] | Mapping[str, str], *, kms: Any = None,
                     key_id: str | None = None, function_name: str | None = None,
                     context: Mapping[str, str] | None = None) -> str:
    """Encrypt ``NAME -> value`` pairs (order kept) into a ``kms-env v1`` file."""
    pairs = list(entries.items() if isinstance(entries, Mapping) else entries)
    seen: set[str] = set()
    for name, _ in pairs:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise EnvFileFormatError("variable names must match [A-Za-z_][A-Za-z0-9_]*")
        if name in seen:
            raise EnvFileFormatError(f"{name} appears twice")
        seen.add(name)
    kms, remote = _client(kms)
    ctx = dict(context or {})
    if function_name:
        ctx.update(function_context(function_name))
    key = key_id or DEFAULT_KEY_ID
    try:
        resp = kms.generate_data_key(KeyId=key, KeySpec="AES_256",
                                     EncryptionContext=_mac_context(ctx))
    except Exception as exc:
        if not _is_client_failure(exc):
            raise
        raise map_error(exc, "cannot make the file's MAC key", None) from None
    mac_key, wrapped = resp["Plaintext"], resp["CiphertextBlob"]
    key_arn = resp.get("KeyId") or key
    # Values under the resolved key ARN, so an alias retargeted mid-way
    # cannot split one file across two keys.
    results = run_all(lambda p: encrypt_value(p[1], name=p[0], kms=kms, key_id=key_arn,
                                              context=ctx or None), pairs, concurrent=remote)
    values = []
    for (name, _), (value, error) in zip(pairs, results, strict=True):
        if error is not None:
            raise error
        values.append((name, value))
    header = header_text(ctx, key_arn)
    return render(header, values, wrapped, compute_mac(mac_key, header, values, wrapped))


def decrypt_env_file(text: str, *, kms: Any = None, key_id: str | None = None
                     ) -> dict[str, str]:
    """Verify the MAC, then decrypt every value (concurrently when KMS is
    remote).  Returns ``{name: plaintext}`` in file order.  ``key_id`` pins the
    KMS key the file must be encrypted under; values are always pinned to the
    (authenticated) header's key."""
    env = parse(text)
    kms, remote = _client(kms)
    # The header's key is trusted only once the MAC has verified it.
    params: dict[str, Any] = {"CiphertextBlob": env.wrapped_key,
                              "EncryptionContext": _mac_context(env.context)}
    if key_id:
        params["KeyId"] = key_id
    try:
        mac_key = kms.decrypt(**params)["Plaintext"]
    except Exception as exc:
        if not _is_client_failure(exc):
            raise
        code, _ = _kms_error(exc)
        if code in ("InvalidCiphertextException", "ValidationException", "IncorrectKeyException"):
            raise EnvFileTamperedError(
                f"the file's MAC key does not decrypt ({code}): the header or MAC line was "
                f"modified, or the file was encrypted under another key or KMS",
                code=code) from None
        raise map_error(exc, "cannot open the encrypted .env file", None) from None
    verify_mac(mac_key, env)
    pin = key_id or env.key
    contexts = [env.context or None]
    results = run_all(lambda e: decrypt_value(e[1], name=e[0], kms=kms, contexts=contexts,
                                              key_id=pin), env.entries, concurrent=remote)
    out: dict[str, str] = {}
    for (name, _), (plaintext, error) in zip(env.entries, results, strict=True):
        if error is not None:
            raise error
        try:
            out[name] = plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise EnvFileFormatError(f"{name} is not UTF-8 text", variable=name) from None
    return out


def load_env_file(path: str, *, kms: Any = None, key_id: str | None = None,
                  into_environ: bool = True, override: bool = True) -> dict[str, str]:
    """Decrypt an encrypted .env file; by default also set its variables in
    ``os.environ`` (``override=False`` keeps variables already set)."""
    import os  # noqa: PLC0415 - cold start of the package (os is loaded anyway; kept as written)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise EnvFileFormatError(f"{path} is not UTF-8 text") from None
    values = decrypt_env_file(text, kms=kms, key_id=key_id)
    if into_environ:
        for name, value in values.items():
            if override or name not in os.environ:
                os.environ[name] = value
    return values


def read_plain_env(text: str) -> list[tuple[str, str]]:
    """Read a plaintext .env file with python-dotenv (quotes, ``export``,
    comments, multi-line values), without variable expansion."""
    import io  # noqa: PLC0415 - only the CLI reads plaintext .env files

    from dotenv import dotenv_values  # noqa: PLC0415 - python-dotenv: only the CLI needs it
    values = dotenv_values(stream=io.StringIO(text), interpolate=False)
    out = []
    for name, value in values.items():
        if not NAME_RE.match(name):
            raise EnvFileFormatError("variable names must match [A-Za-z_][A-Za-z0-9_]*")
        if value is None:
            raise EnvFileFormatError(f"{name} has no value (expected NAME=VALUE)", variable=name)
        out.append((name, value))
    return out

