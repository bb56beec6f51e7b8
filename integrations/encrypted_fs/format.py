"""The encrypted-file format (docs/encrypted-file-format.md), independent of KMS.

A file is ``header ‖ chunk_0 … chunk_{n-1} [‖ trailer]``.  The header carries
the wrapped data key and the encryption context; each chunk is AES-256-GCM
under a per-file content key derived with HKDF-SHA256 from the data key and a
random salt, nonce = ``u64 index ‖ u32 last``.  With the default layout
(1 KiB header, 64 KiB chunks) the plaintext size follows from the object size
alone; other layouts end with a small trailer and an object size that the
default layout can never have, so both are recognised without reading the
header.
"""
from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.constant_time import bytes_eq
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kms_core.envelope import encode_context as _encode_context

from .errors import (
    ChunkAuthenticationError,
    HeaderAuthenticationError,
    HeaderError,
    KeyCommitmentError,
    LayoutError,
    NotEncryptedError,
    TrailingDataError,
    TruncatedFileError,
    UnsupportedFormatError,
)

if TYPE_CHECKING:
    from typing import TypeAlias

    Buffer: TypeAlias = bytes | bytearray | memoryview  # what AESGCM's *_into methods take

MAGIC = b"KFSE"
TRAILER_MAGIC = b"KFST"
VERSION = 1
SUITE_AES256GCM_HKDF_SHA256 = 1
TAG_SIZE = 16
SALT_SIZE = 32
COMMIT_SIZE = 32
HEADER_TAG_SIZE = 32
DATA_KEY_SIZE = 32
PREAMBLE = struct.Struct(">4sBBBBI")  # magic, version, suite, chunk_log2, flags, header_size
TRAILER = struct.Struct(">4sBII")     # magic, chunk_log2, header_size, trailer_size
HEADER_UNIT = 1024
DEFAULT_HEADER_SIZE = 1024
DEFAULT_CHUNK_LOG2 = 16
DEFAULT_CHUNK_SIZE = 1 << DEFAULT_CHUNK_LOG2
MIN_CHUNK_LOG2, MAX_CHUNK_LOG2 = 12, 24
MAX_HEADER_SIZE = 64 * 1024
# Default-layout bodies never have these residues modulo (chunk + tag); a
# non-default file is padded by its trailer to land on TRAILER_RESIDUE.
_DEFAULT_UNIT = DEFAULT_CHUNK_SIZE + TAG_SIZE
TRAILER_RESIDUE = 1
MIN_FILE_SIZE = DEFAULT_HEADER_SIZE + TAG_SIZE  # default layout, empty plaintext

_LABEL = b"KFSE v1 "


def encode_context(context: Mapping[str, str] | None) -> bytes:
    """The project-wide canonical context encoding (kms_core.envelope)."""
    return _encode_context(context)


def decode_context(buf: Buffer, offset: int) -> tuple[dict[str, str], int]:
    """Parse ``encode_context`` output at ``offset``; strict (sorted, unique, UTF-8)."""
    try:
        (count,) = struct.unpack_from(">H", buf, offset)
        pos = offset + 2
        out: dict[str, str] = {}
        prev = None
        for _ in range(count):
            (klen,) = struct.unpack_from(">H", buf, pos)
            k = bytes(buf[pos + 2:pos + 2 + klen])
            pos += 2 + klen
            (vlen,) = struct.unpack_from(">H", buf, pos)
            v = bytes(buf[pos + 2:pos + 2 + vlen])
            pos += 2 + vlen
            if len(k) != klen or len(v) != vlen or pos > len(buf):
                raise HeaderError("encryption context is cut short")
            if prev is not None and k <= prev:
                raise HeaderError("encryption context is not in canonical order")
            prev = k
            out[k.decode("utf-8")] = v.decode("utf-8")
    except (struct.error, UnicodeDecodeError) as exc:
        raise HeaderError("encryption context is malformed") from exc
    return out, pos


def _hkdf(data_key: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_LABEL + info).derive(data_key)


@dataclass(frozen=True)
class FileKeys:
    content_key: bytes = field(repr=False)
    commitment: bytes = field(repr=False)
    header_key: bytes = field(repr=False)


def derive_keys(data_key: bytes, salt: bytes, suite: int, chunk_log2: int,
                context_bytes: bytes) -> FileKeys:
    """Per-file keys.  The content key binds suite, chunk size and context."""
    if len(data_key) != DATA_KEY_SIZE:
        raise ValueError("data key must be 32 bytes")
    s = bytes([suite])
    ctx_hash = hashlib.sha256(context_bytes).digest()
    return FileKeys(
        content_key=_hkdf(data_key, salt, b"content" + s + bytes([chunk_log2]) + ctx_hash),
        commitment=_hkdf(data_key, salt, b"commit" + s),
        header_key=_hkdf(data_key, salt, b"header" + s),
    )


def _header_tag(header_key: bytes, signed: bytes) -> bytes:
    h = hmac.HMAC(header_key, hashes.SHA256())
    h.update(signed)
    return h.finalize()


@dataclass
class Header:
    """A parsed or to-be-written header.  ``repr`` shows no key material."""

    chunk_log2: int
    header_size: int
    salt: bytes = field(repr=False)
    commitment: bytes = field(repr=False)
    context: dict[str, str]
    context_bytes: bytes = field(repr=False)
    tag: bytes = field(repr=False)
    key_id: str
    wrapped_key: bytes = field(repr=False)
    version: int = VERSION
    suite: int = SUITE_AES256GCM_HKDF_SHA256
    flags: int = 0

    @property
    def chunk_size(self) -> int:
        return 1 << self.chunk_log2

    @property
    def signed_bytes(self) -> bytes:
        return (PREAMBLE.pack(MAGIC, self.version, self.suite, self.chunk_log2, self.flags,
                              self.header_size)
                + self.salt + self.commitment + self.context_bytes)

    @property
    def is_default_layout(self) -> bool:
        return self.header_size == DEFAULT_HEADER_SIZE and self.chunk_log2 == DEFAULT_CHUNK_LOG2

    def encode(self) -> bytes:
        kid = self.key_id.encode("utf-8")
        body = (self.signed_bytes + self.tag + struct.pack(">H", len(kid)) + kid
                + struct.pack(">H", len(self.wrapped_key)) + self.wrapped_key)
        if len(body) > self.header_size:
            raise ValueError("header fields do not fit the header size")
        return body + bytes(self.header_size - len(body))

    @staticmethod
    def needed_size(key_id: str, wrapped_key: bytes, context_bytes: bytes) -> int:
        """Smallest header size (a multiple of 1 KiB) that holds these fields."""
        n = (PREAMBLE.size + SALT_SIZE + COMMIT_SIZE + len(context_bytes) + HEADER_TAG_SIZE
             + 2 + len(key_id.encode("utf-8")) + 2 + len(wrapped_key))
        return max(DEFAULT_HEADER_SIZE, -(-n // HEADER_UNIT) * HEADER_UNIT)

    @classmethod
    def parse_preamble(cls, buf: Buffer, path: str | None = None) -> tuple[int, int]:
        """(chunk_log2, header_size) from the first 12 bytes; checks magic, version, suite."""
        if len(buf) < PREAMBLE.size or bytes(buf[:4]) != MAGIC:
            raise NotEncryptedError("not an encrypted file (no KFSE header)", path)
        _magic, version, suite, chunk_log2, flags, header_size = PREAMBLE.unpack_from(buf)
        if version != VERSION:
            raise UnsupportedFormatError(f"unsupported format version {version}", path)
        if suite != SUITE_AES256GCM_HKDF_SHA256:
            raise UnsupportedFormatError(f"unsupported algorithm suite {suite}", path)
        if flags != 0:
            raise UnsupportedFormatError(f"unsupported header flags {flags:#x}", path)
        if not MIN_CHUNK_LOG2 <= chunk_log2 <= MAX_CHUNK_LOG2:
            raise UnsupportedFormatError(f"unsupported chunk size 2**{chunk_log2}", path)
        if header_size % HEADER_UNIT or not DEFAULT_HEADER_SIZE <= header_size <= MAX_HEADER_SIZE:
            raise HeaderError(f"invalid header size {header_size}", path)
        return chunk_log2, header_size

    @classmethod
    def parse(cls, buf: Buffer, path: str | None = None) -> Header:
        chunk_log2, header_size = cls.parse_preamble(buf, path)
        if len(buf) < header_size:
            raise HeaderError("header is cut short", path)
        buf = memoryview(buf)[:header_size]
        try:
            pos = PREAMBLE.size
            salt = bytes(buf[pos:pos + SALT_SIZE])
            pos += SALT_SIZE
            commitment = bytes(buf[pos:pos + COMMIT_SIZE])
            pos += COMMIT_SIZE
            ctx_start = pos
            context, pos = decode_context(buf, pos)
            context_bytes = bytes(buf[ctx_start:pos])
            tag = bytes(buf[pos:pos + HEADER_TAG_SIZE])
            pos += HEADER_TAG_SIZE
            (klen,) = struct.unpack_from(">H", buf, pos)
            key_id = bytes(buf[pos + 2:pos + 2 + klen]).decode("utf-8")
            pos += 2 + klen
            (wlen,) = struct.unpack_from(">H", buf, pos)
            wrapped = bytes(buf[pos + 2:pos + 2 + wlen])
            pos += 2 + wlen
        except HeaderError as exc:
            raise HeaderError(str(exc), path) from None
        except (struct.error, UnicodeDecodeError):
            raise HeaderError("header fields are malformed", path) from None
        if pos > header_size or len(wrapped) != wlen or not wlen:
            raise HeaderError("header fields overrun the header", path)
        if bytes(buf[pos:header_size]).count(0) != header_size - pos:  # in C, not per byte
            raise HeaderError("header padding is not zero", path)
        return cls(chunk_log2=chunk_log2, header_size=header_size, salt=salt,
                   commitment=commitment, context=context, context_bytes=context_bytes,
                   tag=tag, key_id=key_id, wrapped_key=wrapped)

    def verify(self, data_key: bytes, path: str | None = None) -> FileKeys:
        """Check commitment then header tag (both constant time); return the file keys."""
        keys = derive_keys(data_key, self.salt, self.suite, self.chunk_log2, self.context_bytes)
        if not bytes_eq(keys.commitment, self.commitment):
            raise KeyCommitmentError("data key does not match the key commitment", path)
        h = hmac.HMAC(keys.header_key, hashes.SHA256())
        h.update(self.signed_bytes)
        try:
            h.verify(self.tag)
        except InvalidSignature:
            raise HeaderAuthenticationError("header authentication failed", path) from None
        return keys

    def with_wrapped_key(self, key_id: str, wrapped_key: bytes) -> Header:
        """Same data key and chunks, new wrapped key (rewrap).  Tag is unchanged:
        it does not cover the wrapped key, which the commitment already pins."""
        return Header(chunk_log2=self.chunk_log2, header_size=max(
            self.header_size, Header.needed_size(key_id, wrapped_key, self.context_bytes)),
            salt=self.salt, commitment=self.commitment, context=dict(self.context),
            context_bytes=self.context_bytes, tag=self.tag, key_id=key_id,
            wrapped_key=wrapped_key)


def new_header(data_key: bytes, wrapped_key: bytes, key_id: str,
               context: Mapping[str, str] | None, chunk_size: int = DEFAULT_CHUNK_SIZE,
               salt: bytes | None = None) -> tuple[Header, FileKeys]:
    """A fresh header (random salt unless given, for test vectors) and its keys."""
    chunk_log2 = chunk_size.bit_length() - 1
    if chunk_size != 1 << chunk_log2 or not MIN_CHUNK_LOG2 <= chunk_log2 <= MAX_CHUNK_LOG2:
        raise ValueError("chunk_size must be a power of two from 4 KiB to 16 MiB")
    salt = os.urandom(SALT_SIZE) if salt is None else salt
    ctx = dict(context or {})
    ctx_bytes = encode_context(ctx)
    keys = derive_keys(data_key, salt, SUITE_AES256GCM_HKDF_SHA256, chunk_log2, ctx_bytes)
    size = Header.needed_size(key_id, wrapped_key, ctx_bytes)
    if size > MAX_HEADER_SIZE:
        raise ValueError("encryption context, key id and wrapped key exceed 64 KiB")
    hdr = Header(chunk_log2=chunk_log2, header_size=size, salt=salt,
                 commitment=keys.commitment, context=ctx, context_bytes=ctx_bytes, tag=b"",
                 key_id=key_id, wrapped_key=wrapped_key)
    hdr.tag = _header_tag(keys.header_key, hdr.signed_bytes)
    return hdr, keys


# ---------------------------------------------------------------- layout math

def body_plaintext_size(body: int, chunk_size: int) -> int | None:
    """Plaintext size of ``body`` bytes of chunks, or None if no chunking has that length."""
    unit = chunk_size + TAG_SIZE
    if body < TAG_SIZE:
        return None
    n = -(-body // unit)
    last = body - (n - 1) * unit
    if last < TAG_SIZE + 1 and not (n == 1 and last == TAG_SIZE):
        return None
    return body - TAG_SIZE * n


def ciphertext_body_size(plain: int, chunk_size: int) -> int:
    n = max(1, -(-plain // chunk_size))
    return plain + TAG_SIZE * n


def needs_trailer(ciphertext_size: int) -> bool:
    """True if the object size says 'non-default layout: read the trailer'."""
    return (ciphertext_size >= DEFAULT_HEADER_SIZE
            and 1 <= (ciphertext_size - DEFAULT_HEADER_SIZE) % _DEFAULT_UNIT <= 15)


def default_plaintext_size(ciphertext_size: int) -> int | None:
    """Plaintext size of a default-layout file from its object size alone.

    None when the size is impossible for the default layout (a non-default
    file, a plaintext object, or a damaged one)."""
    if ciphertext_size < MIN_FILE_SIZE or needs_trailer(ciphertext_size):
        return None
    return body_plaintext_size(ciphertext_size - DEFAULT_HEADER_SIZE, DEFAULT_CHUNK_SIZE)


def trailer_size_for(header_size: int, body: int) -> int:
    """Trailer length that moves the object size onto TRAILER_RESIDUE."""
    return TRAILER.size + (TRAILER_RESIDUE + DEFAULT_HEADER_SIZE - header_size - body
                           - TRAILER.size) % _DEFAULT_UNIT


def make_trailer(chunk_log2: int, header_size: int, body: int) -> bytes:
    size = trailer_size_for(header_size, body)
    return bytes(size - TRAILER.size) + TRAILER.pack(TRAILER_MAGIC, chunk_log2, header_size, size)


def parse_trailer(tail: bytes, path: str | None = None) -> tuple[int, int, int]:
    """(chunk_log2, header_size, trailer_size) from the object's last 13 bytes."""
    if len(tail) < TRAILER.size:
        raise LayoutError("object is too short for its trailer", path)
    magic, chunk_log2, header_size, trailer_size = TRAILER.unpack_from(tail, len(tail) - TRAILER.size)
    if magic != TRAILER_MAGIC or trailer_size < TRAILER.size:
        raise LayoutError("object size needs a trailer, but it has none", path)
    return chunk_log2, header_size, trailer_size


def plaintext_size_with_trailer(ciphertext_size: int, tail: bytes) -> int | None:
    """Plaintext size of a non-default file from its size and last 13 bytes (None if invalid)."""
    try:
        chunk_log2, header_size, trailer_size = parse_trailer(tail)
    except LayoutError:
        return None
    if not MIN_CHUNK_LOG2 <= chunk_log2 <= MAX_CHUNK_LOG2:
        return None
    return body_plaintext_size(ciphertext_size - header_size - trailer_size, 1 << chunk_log2)


@dataclass(frozen=True)
class Layout:
    """Where the chunks of one file sit, from its verified header and object size."""

    header_size: int
    chunk_size: int
    body_size: int
    plaintext_size: int
    n_chunks: int
    trailer_size: int = 0

    @classmethod
    def of(cls, header: Header, ciphertext_size: int, tail: bytes | None = None,
           path: str | None = None) -> Layout:
        if header.is_default_layout:
            if needs_trailer(ciphertext_size):
                # Only a cut (or appended) fragment gives a default file this length.
                raise TruncatedFileError("object length is not a whole number of chunks "
                                         "(cut short or extended)", path)
            body = ciphertext_size - header.header_size
        else:
            if not needs_trailer(ciphertext_size) or tail is None:
                raise LayoutError("object size does not match its header's layout", path)
            c_log2, h_size, t_size = parse_trailer(tail, path)
            if (c_log2, h_size) != (header.chunk_log2, header.header_size):
                raise LayoutError("trailer does not match the header", path)
            if t_size > ciphertext_size - header.header_size:
                raise LayoutError("trailer is longer than the object", path)
            body = ciphertext_size - header.header_size - t_size
        plain = body_plaintext_size(body, header.chunk_size)
        if plain is None:
            # Too short for even one chunk, or ends in a fragment shorter than a tag.
            raise TruncatedFileError("object length is not a whole number of chunks", path)
        return cls(header.header_size, header.chunk_size, body, plain,
                   max(1, -(-body // (header.chunk_size + TAG_SIZE))),
                   ciphertext_size - header.header_size - body)

    def chunk_offset(self, index: int) -> int:
        return self.header_size + index * (self.chunk_size + TAG_SIZE)

    @property
    def ciphertext_size(self) -> int:
        return self.header_size + self.body_size + self.trailer_size


_NONCE = struct.Struct(">QI")

#: The nonce of chunk ``index``: ``u64 index ‖ u32 last`` (``chunk_nonce(index, last)``).
#: The one place a chunk nonce is built; hot loops bind it to a local name.
chunk_nonce = _NONCE.pack


class ChunkCipher:
    """Seals and opens the chunks of one file with its content key.

    ``seal_chunks`` and ``open_chunks`` are the only chunk loops: the writer,
    the reader (on any thread) and the whole-object helpers below all use them,
    so the fast path and the reference are the same code.
    """

    __slots__ = ("_aead", "chunk_size", "path")

    def __init__(self, content_key: bytes, chunk_size: int, path: str | None = None):
        self._aead = AESGCM(content_key)
        self.chunk_size = chunk_size
        self.path = path

    def __repr__(self) -> str:
        return f"<ChunkCipher chunk_size={self.chunk_size}>"

    def seal_chunks(self, first: int, src: Buffer, out: Buffer, final: bool = False) -> int:
        """Seal ``src`` as chunks ``first``, ``first + 1``, … into ``out``; returns
        the ciphertext length (plaintext + one tag per chunk).

        Without ``final``, ``src`` must be whole chunks, none of them final.
        With it, the last chunk may be short (or empty, for an empty file) and
        is marked final.  AESGCM releases the GIL, so other threads may seal
        or open other chunks meanwhile."""
        aead, nonce, c = self._aead, chunk_nonce, self.chunk_size
        src, out = memoryview(src), memoryview(out)
        n = len(src)
        if final:
            count = max(1, -(-n // c))
        else:
            count, rest = divmod(n, c)
            if rest:
                raise ValueError("only the final chunk may be shorter than the chunk size")
        last = first + count - 1
        p = o = 0
        for i in range(first, last + 1):
            piece = src[p:p + c]
            k = len(piece) + TAG_SIZE
            aead.encrypt_into(nonce(i, final and i == last), piece, None, out[o:o + k])
            p += c
            o += k
        return o

    def open_chunks(self, first: int, ct: Buffer, out: Buffer, final_index: int) -> int:
        """Open the consecutive chunks in ``ct`` (chunk ``first`` onwards; chunk
        ``final_index`` is expected to be the file's last) into ``out``; returns
        the plaintext length.

        On failure the failing chunk's bytes in ``out`` are zeroed (AESGCM.decrypt_into
        leaves unauthenticated plaintext there) and its typed error is raised:
        chunks before it are authenticated plaintext, nothing after it is written."""
        aead, nonce, u = self._aead, chunk_nonce, self.chunk_size + TAG_SIZE
        ct, out = memoryview(ct), memoryview(out)
        off = pos = 0
        i = first
        while off < len(ct):
            piece = ct[off:off + u]
            n = len(piece) - TAG_SIZE
            dst = out[pos:pos + n]
            try:
                aead.decrypt_into(nonce(i, i == final_index), piece, None, dst)
            except InvalidTag:
                dst[:] = bytes(n)
                raise self._classify(i, i == final_index, piece) from None
            off += u
            pos += n
            i += 1
        return pos

    def encrypt(self, index: int, last: bool, data: Buffer) -> bytes:
        """One chunk, as bytes (tests and small values)."""
        out = bytearray(len(memoryview(data)) + TAG_SIZE)
        self.seal_chunks(index, data, out, final=last)
        return bytes(out)

    def decrypt(self, index: int, last: bool, ct: Buffer) -> bytes:
        """One chunk, as bytes (tests and small values)."""
        out = bytearray(max(0, len(memoryview(ct)) - TAG_SIZE))
        self.open_chunks(index, ct, out, index if last else -1)
        return bytes(out)

    def _classify(self, index: int, last: bool, ct: Buffer) -> Exception:
        """Name the failure: a chunk valid with the other last-flag means the
        object was cut short (or extended) rather than corrupted."""
        try:
            self._aead.decrypt(chunk_nonce(index, not last), ct, None)
        except InvalidTag:
            return ChunkAuthenticationError(f"chunk {index} failed authentication", self.path)
        if last:
            return TruncatedFileError(f"object ends after chunk {index}, which is not final",
                                      self.path)
        return TrailingDataError(f"chunk {index} is final but more data follows", self.path)


# ------------------------------------------------------- whole-object helpers

def encrypt_bytes(plaintext: Buffer, data_key: bytes, wrapped_key: bytes, key_id: str,
                  context: Mapping[str, str] | None = None,
                  chunk_size: int = DEFAULT_CHUNK_SIZE, salt: bytes | None = None) -> bytes:
    """A whole encrypted object in memory (test vectors, small values)."""
    header, keys = new_header(data_key, wrapped_key, key_id, context, chunk_size, salt)
    cipher = ChunkCipher(keys.content_key, chunk_size)
    body = bytearray(ciphertext_body_size(len(plaintext), chunk_size))
    cipher.seal_chunks(0, plaintext, body, final=True)
    parts = [header.encode(), bytes(body)]
    if not header.is_default_layout:
        parts.append(make_trailer(header.chunk_log2, header.header_size, len(body)))
    return b"".join(parts)


def decrypt_bytes(blob: Buffer, data_key: bytes, path: str | None = None) -> bytes:
    """Decrypt and fully verify a whole encrypted object held in memory."""
    blob = memoryview(blob)
    header = Header.parse(blob, path)
    keys = header.verify(data_key, path)
    tail = bytes(blob[-TRAILER.size:]) if not header.is_default_layout else None
    layout = Layout.of(header, len(blob), tail, path)
    if layout.trailer_size and any(blob[layout.header_size + layout.body_size:-TRAILER.size]):
        raise LayoutError("trailer padding is not zero", path)
    cipher = ChunkCipher(keys.content_key, layout.chunk_size, path)
    out = bytearray(layout.plaintext_size)
    body = blob[layout.header_size:layout.header_size + layout.body_size]
    cipher.open_chunks(0, body, out, layout.n_chunks - 1)
    return bytes(out)
