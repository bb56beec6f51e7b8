"""The per-value bind and result processors of ``EncryptedType``.

SQLAlchemy makes them once per type and dialect (i.e. per engine) and calls
them once per value, so they run once per value of a bulk statement: each
operation they skip is measurable (benchmarks/db_bulk.py), and
tests/db/test_db_fastpath.py holds them equal to the codec's path.

Everything a value needs (statement token, key, associated data, a block of
nonces) sits in one immutable state object (``_Block`` for writes, ``_ReadKey``
for reads) that is replaced whole, never edited: a thread switching statements
can never pair one key's header with another key's cipher or nonces.  Per value
that leaves one AEAD call, one comparison against the statement token and the
next item of a pre-built nonce block.  The state classes use ``__slots__``:
reading a slot is as cheap as indexing a tuple (both are specialized
instructions in CPython 3.11+).
"""
from __future__ import annotations

import itertools
import operator
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag

from . import codec
from . import format as fmt
from .errors import DecryptionError, EncryptedColumnError
from .keys import FORCED_KEY, KEYRING
from .keys import _current as _current_conn
from .rows import RowValue, SealedValue

if TYPE_CHECKING:
    from kms_core.envelope import CachedKey

    from .types import EncryptedType

_NEVER = object()  # a statement token no execution has
_FIRST_BLOCK, _MAX_BLOCK = 8, 1024  # uses (and nonces) reserved at a time; doubling
_NONCE = slice(fmt.HEADER_LEN, None)  # of header+nonce; made once (3.11 builds one per use)


# ---------------------------------------------------------------- writing
class _Block:
    """One statement's write state: the key and a block of reserved uses."""

    __slots__ = ("aad", "dk", "entry", "head", "items", "own", "seal", "size", "token")

    def __init__(self, token: object, items: Iterator, seal: Any, aad: Any,
                 entry: CachedKey | None, head: bytes, dk: fmt.DataKey | None, own: bool,
                 size: int):
        self.token = token  # the execution this block serves
        self.items = items  # header+nonce per value (randomized), else the header
        self.seal = seal  # the bound AEAD encrypt
        self.aad = aad  # associated data: header+context (GCM) or [header, context] (SIV)
        self.entry = entry  # write-cache entry whose uses this block reserved; None: forced key
        self.head = head
        self.dk = dk
        self.own = own  # counter nonces (a key this process generated)
        self.size = size  # uses reserved by this block


_NO_BLOCK = _Block(_NEVER, iter(()), None, None, None, b"", None, False, 0)


class _Writer:
    """Cold paths of one column's bind processor: new statement, block spent."""

    __slots__ = ("column", "dialect", "mode", "randomized", "state", "stored", "with_nonces")

    def __init__(self, column: EncryptedType, dialect, stored: Callable[[bytes], Any]):
        self.column, self.dialect = column, dialect
        self.mode = column._mode
        self.randomized = self.mode == fmt.RANDOMIZED
        self.with_nonces = self.randomized and not column.bind_to_row  # row-bound: fmt.seal
        self.stored = stored
        self.state = _NO_BLOCK

    def fill(self, old: _Block, entry: CachedKey | None, size: int) -> _Block:
        """Reserve ``size`` uses of the key at once and make their nonces in
        one go: counter nonces for a key this process generated (NIST SP
        800-38D 8.2.1, unique by construction), else random ones from one
        urandom call.  A block outlives neither its statement nor the key."""
        settings = KEYRING.settings
        if entry is not None:
            # at most 1/1024 of a key's uses per block: with small bounds
            # (tests, strict policies) blocks shrink to exact per-value counting
            cap = min(_MAX_BLOCK, settings.write_max_uses >> 10)
            size = max(1, min(size, cap, settings.write_max_uses - entry.uses))
            entry.uses += size
        head = old.head
        items: Iterator
        if not self.with_nonces:
            items = itertools.repeat(self.stored(head), size)
        elif old.own:  # header+nonce only: bytes, no GC-tracked object per value
            items = iter(old.dk.counter_nonces(size, head))  # type: ignore[union-attr]
        else:
            items = iter(list(map(head.__add__, fmt.random_nonces(size))))
        self.state = st = _Block(old.token, items, old.seal, old.aad, entry, head, old.dk,
                                 old.own, size)
        return st

    def refresh(self) -> _Block:
        """A new statement: give back the last block's unused uses, revalidate the key."""
        old = self.state
        if old.entry is not None:
            old.entry.uses -= operator.length_hint(old.items)
        col, mode = self.column, self.mode
        ctx, token = col._ctx(), _current_conn.get()
        forced = FORCED_KEY.get()
        entry: CachedKey | None
        if forced is not None:  # a rotation tool writing under its target key
            entry, dk = None, forced  # looked up again for every statement
        else:  # the cache applies max_age and rollbacks; uses are counted in blocks
            scope = col.key_scope() if col.deterministic else None
            entry = KEYRING.write_entry(self.dialect, col.key_id, mode, scope)
            entry.uses -= 1
            dk = entry.extra
        head = fmt.header(mode, dk.key_id)
        aad: Any
        if self.randomized:
            seal, aad = dk._gcm.encrypt, head + ctx
        else:
            seal, aad = dk._siv.encrypt, [head, ctx]
        # A randomized write key belongs to this process alone (made by
        # GenerateDataKey here, dropped in forked children): counter nonces.
        # Keys read from the key table (forced) get random nonces.
        own = self.randomized and forced is None
        return self.fill(_Block(token, iter(()), seal, aad, None, head, dk, own, 0), entry,
                         _FIRST_BLOCK)

    def next_block(self, st: _Block) -> _Block:
        entry = st.entry
        if entry is None or entry.uses >= KEYRING.settings.write_max_uses:
            return self.refresh()  # forced key, or this key's uses are spent
        return self.fill(st, entry, min(st.size * 2, _MAX_BLOCK))


def encryptor(column: EncryptedType, dialect) -> Callable[[Any], Any]:
    """The bind processor of ``column`` on ``dialect``."""
    # sqlite3 binds a bytearray as is, but looks up an adapter for bytes: a
    # failed attribute lookup that formats an exception per value (measured
    # at half the cost of the AES call).  Same BLOB either way.
    to_bytearray = dialect.name == "sqlite"
    writer = _Writer(column, dialect, bytearray if to_bytearray else bytes)
    if column.bind_to_row:
        return _row_bound_writer(column, writer)
    if writer.randomized:
        return _randomized_writer(column, writer, to_bytearray)
    return _deterministic_writer(column, writer)


def _randomized_writer(column: EncryptedType, w: _Writer, to_bytearray: bool):
    current, encode = _current_conn.get, codec.encode
    as_json, encrypt_null = column._as_json, column.encrypt_null
    fast_str = None if as_json else str  # a JSON inner type JSON-encodes str too
    join, nonce_ = bytearray().join, _NONCE

    def process(value):
        if type(value) is fast_str:  # the common case, inlined
            try:
                plain = ("\x01" + value).encode()
            except UnicodeEncodeError:  # lone surrogates: the codec's surrogatepass
                plain = encode(value)
        elif value is None and not encrypt_null:
            return None
        else:
            plain = encode(value, as_json)
        st = w.state
        if st.token is not current():  # a new statement: revalidate the key
            st = w.refresh()
        for head_nonce in st.items:  # noqa: B007 - the block's next item (FOR_ITER, no next() call)
            break
        else:
            st = w.next_block(st)
            head_nonce = next(st.items)
        body = st.seal(head_nonce[nonce_], plain, st.aad)
        return join((head_nonce, body)) if to_bytearray else head_nonce + body

    return process


def _deterministic_writer(column: EncryptedType, w: _Writer):
    current, encode = _current_conn.get, codec.encode
    as_json, encrypt_null = column._as_json, column.encrypt_null
    fast_str = None if as_json else str

    def process(value):
        if type(value) is fast_str:
            try:
                plain = ("\x01" + value).encode()
            except UnicodeEncodeError:
                plain = encode(value)
        elif value is None and not encrypt_null:
            return None
        else:
            plain = encode(value, as_json)
        st = w.state
        if st.token is not current():
            st = w.refresh()
        for head in st.items:  # noqa: B007 - the next header; counts a use
            break
        else:
            st = w.next_block(st)
            head = next(st.items)
        return head + st.seal(plain, st.aad)

    return process


def _row_bound_writer(column: EncryptedType, w: _Writer):
    current, encode, as_json = _current_conn.get, codec.encode, column._as_json

    def process(value):
        if value is None and not column.encrypt_null:
            return None
        if type(value) is not RowValue:
            raise EncryptedColumnError(
                f"{column._where()} is bound to its rows: write it through the ORM, or "
                "wrap each value as bind_row(value, *primary_key)")
        st = w.state
        if st.token is not current():
            st = w.refresh()
        for _ in st.items:  # counts a use
            break
        else:
            st = w.next_block(st)
            next(st.items)
        return fmt.seal(st.dk, w.mode, encode(value.value, as_json),  # type: ignore[arg-type]
                        column._row_ctx(value.pk))

    return process


# ---------------------------------------------------------------- reading
class _ReadKey:
    """How to open the values of one header (version, mode, data-key id)."""

    __slots__ = ("aad", "deadline", "head", "open_", "randomized", "token")

    def __init__(self, token: object, head: bytes, open_: Any, aad: Any, randomized: bool,
                 deadline: float):
        self.token = token  # the execution it was last validated for (None in the cache)
        self.head = head
        self.open_ = open_  # the bound AEAD decrypt
        self.aad = aad
        self.randomized = randomized
        self.deadline = deadline  # monotonic time the cached unwrapped key expires


class _Reader:
    """Cold paths of one column's result processor: a new statement or header."""

    __slots__ = ("column", "dialect", "generation", "keys", "last")

    def __init__(self, column: EncryptedType, dialect):
        self.column, self.dialect = column, dialect
        self.keys: dict[bytes, _ReadKey] = {}
        self.generation = -1
        # the last value's key, so a column under one data key skips the dict
        self.last = _ReadKey(_NEVER, b"\xff" * (fmt.HEADER_LEN + 1), None, None, True, 0.0)

    def lookup(self, head: bytes) -> _ReadKey:
        mode = head[1] if len(head) > 1 else None
        if head[:1] != b"\x01" or mode not in fmt.OVERHEAD or len(head) < fmt.HEADER_LEN:
            raise DecryptionError(f"a value in {self.column._where()} is not in a known "
                                  "encrypted-column format")
        entry = KEYRING.read_entry(self.dialect, head[2:10])
        dk, ctx = entry.extra, self.column._ctx()
        deadline = entry.created + KEYRING.settings.read_max_age
        if mode == fmt.RANDOMIZED:
            hit = _ReadKey(None, head, dk._gcm.decrypt, head + ctx, True, deadline)
        else:
            hit = _ReadKey(None, head, dk._siv.decrypt, [head, ctx], False, deadline)
        self.keys[head] = hit
        return hit

    def switch(self, blob) -> _ReadKey:
        token = _current_conn.get()
        if token is not self.last.token:  # a new statement: drop stale keys
            self._expire()
        head = bytes(blob[:fmt.HEADER_LEN])  # any buffer the driver returns
        hit = self.keys.get(head) or self.lookup(head)
        self.last = k = _ReadKey(token, hit.head, hit.open_, hit.aad, hit.randomized, hit.deadline)
        return k

    def _expire(self) -> None:
        if self.generation != KEYRING.generation:
            self.keys.clear()
            self.generation = KEYRING.generation
            return
        now = time.monotonic()
        for h, v in list(self.keys.items()):
            if v.deadline <= now:
                self.keys.pop(h, None)

    def fail(self) -> DecryptionError:
        return DecryptionError(
            f"a value in {self.column._where()} failed to decrypt: it was altered, copied "
            "from another column, table or row, or was not written by this column")


def decryptor(column: EncryptedType, dialect) -> Callable[[Any], Any]:
    """The result processor of ``column`` on ``dialect``."""
    if column.bind_to_row:
        return _row_bound_reader(column, dialect)
    r = _Reader(column, dialect)
    current, decode = _current_conn.get, codec.decode
    # Slices and the AEAD take any buffer (bytes, bytearray, memoryview), so
    # the value is never copied first.  A slice compared with == costs less
    # than bytes.startswith (which parses an argument tuple); the slice
    # objects are made once (3.11 builds one per use).
    head_, nonce_, gcm_body, siv_body, text = (
        slice(None, fmt.HEADER_LEN), slice(fmt.HEADER_LEN, fmt.HEADER_LEN + fmt.NONCE_LEN),
        slice(fmt.HEADER_LEN + fmt.NONCE_LEN, None), slice(fmt.HEADER_LEN, None), slice(1, None))

    def process(value):
        if value is None:
            return None
        k = r.last
        if value[head_] != k.head or k.token is not current():
            k = r.switch(value)
        try:  # a truncated value fails here too (short nonce or no tag)
            plain = (k.open_(value[nonce_], value[gcm_body], k.aad) if k.randomized
                     else k.open_(value[siv_body], k.aad))
        except (InvalidTag, ValueError):
            raise r.fail() from None
        try:
            if plain[0] == 1:  # str, the common case
                return plain[text].decode()
        except (IndexError, UnicodeDecodeError):
            pass  # empty, or lone surrogates (or malformed): the codec decides
        return decode(plain)

    return process


def _row_bound_reader(column: EncryptedType, dialect):
    decode = codec.decode

    def open_row(blob: bytes, pk) -> Any:
        return decode(fmt.open_(blob, column._row_ctx(pk),
                                lambda kid: KEYRING.read_entry(dialect, kid).extra))

    def process(value):
        if value is None:
            return None
        return SealedValue(value if type(value) is bytes else bytes(value), open_row,
                           column._where())

    return process
