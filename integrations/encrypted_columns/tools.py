"""Rotation and migration tools: batched, resumable, safe to interrupt.

Each batch is one transaction; which rows still need work is read from the
data itself (the data-key id in each value, the KMS key of each key-table
row), so an interrupted run loses nothing and a rerun continues where the
last committed batch ended.  Nothing here needs a KMS key rotation: rotating
a KMS key (EnableKeyRotation / RotateKeyOnDemand) changes no stored data.

* ``rewrap``: rewrap data keys under another KMS key (ReEncrypt), rows untouched.
* ``reencrypt``: re-encrypt a randomized column under a fresh data key; a
  deterministic column keeps its one key (values under any other are moved onto it).
* ``encrypt_column``: encrypt an existing plaintext column in place.
* ``decrypt_column``: the reverse, for leaving the product.
"""
from __future__ import annotations

import datetime as _dt
import decimal
import json
import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import JSON, Column, LargeBinary, and_, bindparam, func, inspect, select, tuple_, type_coerce, update
from sqlalchemy import exc as sa_exc
from sqlalchemy import types as sa_types
from sqlalchemy.engine import Connection, Engine
from tqdm import tqdm

from . import format as fmt
from .errors import DecryptionError, EncryptedColumnError, UnknownDataKeyError
from .keys import _TABLE, FORCED_KEY, KEYRING, _raise_if_missing, data_key_context, install_listeners
from .rows import RowValue
from .types import META, EncryptedJSON, EncryptedType

__all__ = ["decrypt_column", "encrypt_column", "reencrypt", "rewrap"]


def _bar(total: int, desc: str, progress: bool):
    return tqdm(total=total, desc=desc, unit="row", disable=not progress, leave=False)


def _type(col: Column) -> Any:
    """The column's EncryptedType or EncryptedJSON (checked by ``_column``)."""
    return col.type


def _column(target) -> Column:
    """A Column from a Column or an ORM attribute (``User.ssn``)."""
    col = getattr(target, "property", None)
    if col is not None and hasattr(col, "columns"):
        target = col.columns[0]
    if not isinstance(target, Column) or target.table is None:
        raise TypeError("pass a Table column or an ORM attribute such as User.ssn")
    if not isinstance(target.type, (EncryptedType, EncryptedJSON)):
        raise TypeError(f"{target.table.name}.{target.name} is not an encrypted column")
    if not target.table.primary_key.columns:
        raise EncryptedColumnError(f"table {target.table.name} needs a primary key to be "
                                   "processed in resumable batches")
    return target


# ---------------------------------------------------------------- rewrap
def _describe(kms, key_id: str) -> str:
    try:
        return kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
    except Exception as err:
        error = getattr(err, "response", {}).get("Error", {})
        code = error.get("Code")
        if code is None:
            raise
        msg = error.get("Message", "")
        raise EncryptedColumnError(f"KMS key {key_id!r}: {msg}", code=code) from err


def rewrap(engine: Engine, new_key_id: str, *, from_key_id: str | None = None,
           batch_size: int = 100, progress: bool = True) -> int:
    """Rewrap every data key (or those under ``from_key_id``) under ``new_key_id``.

    Uses KMS ReEncrypt, so data-key plaintext never leaves KMS; rows keep their
    data-key ids and stay readable throughout.  Returns keys rewrapped.
    """
    install_listeners()
    kms = KEYRING.kms
    target = _describe(kms, new_key_id)
    source = _describe(kms, from_key_id) if from_key_id is not None else None
    cond = _TABLE.c.kms_key_id != target
    if source is not None:
        cond = and_(cond, _TABLE.c.kms_key_id == source)
    with engine.connect() as conn:
        try:
            total = conn.execute(select(func.count()).select_from(_TABLE).where(cond)).scalar_one()
        except (sa_exc.ProgrammingError, sa_exc.OperationalError) as err:
            _raise_if_missing(err)
            raise
    done, last = 0, ""
    with _bar(total, "rewrap", progress) as bar:
        while True:
            with engine.begin() as conn:
                rows = conn.execute(select(_TABLE).where(cond, _TABLE.c.id > last)
                                    .order_by(_TABLE.c.id).limit(batch_size)).all()
                if not rows:
                    break
                for row in rows:
                    ctx = data_key_context(bytes.fromhex(row.id))
                    try:
                        resp = kms.re_encrypt(
                            CiphertextBlob=bytes(row.wrapped), SourceKeyId=row.kms_key_id,
                            SourceEncryptionContext=ctx, DestinationKeyId=new_key_id,
                            DestinationEncryptionContext=ctx)
                    except Exception as err:
                        code = getattr(err, "response", {}).get("Error", {}).get("Code") or \
                            type(err).__name__
                        raise EncryptedColumnError(
                            f"KMS ReEncrypt of data key {row.id} failed ({code})",
                            code=code) from err
                    conn.execute(update(_TABLE).where(_TABLE.c.id == row.id,
                                                      _TABLE.c.kms_key_id == row.kms_key_id)
                                 .values(wrapped=resp["CiphertextBlob"],
                                         kms_key_id=resp["KeyId"]))
                last = rows[-1].id
            done += len(rows)
            bar.update(len(rows))
    return done


# ---------------------------------------------------------------- row walking
def _pages(engine: Engine, col: Column, raw_type, batch_size: int) -> Iterator[tuple]:
    """Yield (connection, rows) per batch, each batch in its own committed
    transaction; rows are (pk..., raw value) in primary-key order."""
    table = col.table
    pk = list(table.primary_key.columns)
    raw = type_coerce(col, raw_type).label("raw")
    last = None
    while True:
        with engine.begin() as conn:
            stmt = select(*pk, raw).where(col.isnot(None)).order_by(*pk).limit(batch_size)
            if last is not None:
                stmt = stmt.where(tuple_(*pk) > tuple_(*last) if len(pk) > 1 else pk[0] > last[0])
            rows = conn.execute(stmt).all()
            if not rows:
                return
            yield conn, rows
            last = tuple(rows[-1][: len(pk)])


def _count(engine: Engine, col: Column) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(col.table)
                            .where(col.isnot(None))).scalar_one()


def _write(conn: Connection, col: Column, raw_type, row, new_raw, check_old=True) -> None:
    _write_many(conn, col, raw_type, [(row, new_raw)], check_old)


def _write_many(conn: Connection, col: Column, raw_type, items, check_old=True) -> None:
    """One executemany UPDATE for a batch of (row, new stored value)."""
    if not items:
        return
    pk = list(col.table.primary_key.columns)
    conds = [c == bindparam(f"_pk{i}") for i, c in enumerate(pk)]
    check_old = check_old and not isinstance(raw_type, JSON)
    if check_old:
        # Optimistic: a value the application changed meanwhile is left for the next run.
        conds.append(type_coerce(col, raw_type) == type_coerce(bindparam("_old"), raw_type))
    stmt = update(col.table).where(*conds).values(
        {col.name: type_coerce(bindparam("_new"), raw_type)})
    params = []
    for row, new_raw in items:
        p = {f"_pk{i}": row[i] for i in range(len(pk))}
        p["_new"] = new_raw
        if check_old:
            p["_old"] = row[-1]
        params.append(p)
    conn.execute(stmt, params)


def _raw_type(col: Column, dialect):
    return JSON() if isinstance(col.type, EncryptedJSON) else LargeBinary()


def _key_of(col: Column, raw) -> bytes | None:
    """The data-key id a stored value names, or None if it is not ours."""
    if isinstance(col.type, EncryptedJSON):
        meta = raw.get(META) if isinstance(raw, dict) else None
        try:
            return bytes.fromhex(meta["key"]) if isinstance(meta, dict) else None
        except (KeyError, TypeError, ValueError):
            return None
    try:
        return fmt.parse_header(raw)[1]
    except DecryptionError:
        return None


# ---------------------------------------------------------------- reencrypt
def reencrypt(engine: Engine, column, *, batch_size: int = 500, progress: bool = True) -> int:
    """Re-encrypt ``column``; returns the values rewritten.

    Randomized columns (and EncryptedJSON): every value moves to a fresh data
    key, recorded in the key table (scope ``reencrypt:<table>.<column>``) so a
    rerun after an interruption resumes with the same key.

    Deterministic columns keep their one data key for good: equality lookups
    and UNIQUE compare stored bytes, so two keys live at once (during a run,
    after a kill, or in a process that cached the old key) would make equal
    values differ.  Here the run moves onto the column's key any value stored
    under another data key (left by an earlier version's rotation, or copied
    in) and rewrites nothing else.  To rotate what protects the column's key,
    rewrap it (``rewrap``) or rotate its KMS key.
    """
    install_listeners()
    col = _column(column)
    t = _type(col)
    if isinstance(t, EncryptedType) and t.deterministic:
        return _converge(engine, col, batch_size, progress)
    scope = t.key_scope()
    job = "reencrypt:" + scope
    with engine.begin() as conn:
        _TABLE.create(conn, checkfirst=True)
        target = KEYRING.scoped_key(conn, t.key_id, job)
    done, _ = _move(engine, col, target, batch_size, progress, f"reencrypt {scope}")
    with engine.begin() as conn:  # finish: the job key becomes an ordinary read key
        conn.execute(update(_TABLE).where(_TABLE.c.scope == job).values(scope=None))
    KEYRING.forget_write_keys(t.key_id)
    return done


def _move(engine: Engine, col: Column, target: fmt.DataKey, batch_size: int, progress: bool,
          desc: str) -> tuple[int, list[tuple]]:
    """Rewrite every value not under ``target`` under it, batch by batch; the
    UPDATE checks the old value, so a value the application changed meanwhile
    is left as it is.  Returns (values rewritten, primary keys of the rows a
    UNIQUE constraint kept from being rewritten)."""
    t = _type(col)
    raw_type = _raw_type(col, engine.dialect)
    done, rejected = 0, []
    with _bar(_count(engine, col), desc, progress) as bar:
        for conn, rows in _pages(engine, col, raw_type, batch_size):
            todo = [r for r in rows if _key_of(col, r[-1]) != target.key_id]
            decrypt, encrypt = _processors(t, conn.dialect)
            token = FORCED_KEY.set(target)
            try:
                items = [(r, encrypt(decrypt(r), r)) for r in todo]
            finally:
                FORCED_KEY.reset(token)
            n, refused = _write_unique(conn, col, raw_type, items)
            done += n
            rejected += refused
            bar.update(len(rows))
    return done, rejected


def _converge(engine: Engine, col: Column, batch_size: int, progress: bool) -> int:
    """Move a deterministic column's stray values onto its one data key."""
    t = _type(col)
    scope = t.key_scope()
    with engine.begin() as conn:
        _TABLE.create(conn, checkfirst=True)
        target = KEYRING.scoped_key(conn, t.key_id, scope)
    done, conflicts = _move(engine, col, target, batch_size, progress, f"reencrypt {scope}")
    if conflicts:
        shown = ", ".join(repr(pk[0] if len(pk) == 1 else pk) for pk in conflicts[:20])
        more = f" and {len(conflicts) - 20} more" if len(conflicts) > 20 else ""
        raise EncryptedColumnError(
            f"{len(conflicts)} value(s) of {scope} duplicate other rows' values but were "
            f"stored under another data key, where UNIQUE could not see them (primary keys "
            f"{shown}{more}); {done} other value(s) were moved. Keep one row of each pair, then "
            "run reencrypt again.", code="ConflictException")
    with engine.begin() as conn:  # retire a job an earlier version left behind
        conn.execute(update(_TABLE).where(_TABLE.c.scope == "reencrypt:" + scope).values(scope=None))
    return done


def _write_unique(conn: Connection, col: Column, raw_type, items) -> tuple[int, list[tuple]]:
    """``_write_many``; if a UNIQUE constraint rejects the batch, row by row
    (each under a savepoint), leaving the rejected rows as they are.  Returns
    (rows written, primary keys of the rejected rows)."""
    if not items:
        return 0, []
    try:
        with conn.begin_nested():
            _write_many(conn, col, raw_type, items)
        return len(items), []
    except sa_exc.IntegrityError:
        pass
    npk = len(col.table.primary_key.columns)
    done, rejected = 0, []
    for item in items:
        try:
            with conn.begin_nested():
                _write_many(conn, col, raw_type, [item])
            done += 1
        except sa_exc.IntegrityError:  # equals a value already under the target key
            rejected.append(tuple(item[0][:npk]))
    return done, rejected


def _processors(t, dialect):
    """(decrypt(row), encrypt(value, row)) for rows of (pk..., stored value)."""
    if isinstance(t, EncryptedType):
        dec, enc = t._decryptor(dialect), t._encryptor(dialect)
        if t.bind_to_row:  # the row's primary key is part of the context
            return (lambda row: _opened(dec(row[-1]), row[:-1]),
                    lambda v, row: enc(RowValue(v, row[:-1])))
        return (lambda row: dec(row[-1])), (lambda v, row: enc(v))
    return (lambda row: t.process_result_value(row[-1], dialect),
            lambda v, row: t.process_bind_param(v, dialect))


def _opened(sealed, pk):
    return None if sealed is None else sealed.decrypt(*pk)


# ---------------------------------------------------------------- plaintext <-> encrypted
def _is_encrypted(col: Column, row, decrypt) -> bool:
    """True if the row's stored value is a value of this column; False if it is
    plaintext.  A value that names a known data key but does not authenticate
    raises DecryptionError: tampered data is never taken for plaintext."""
    raw = row[-1]
    if isinstance(col.type, EncryptedJSON):
        if not (isinstance(raw, dict) and META in raw):
            return False
    elif not isinstance(raw, (bytes, bytearray, memoryview)) or _key_of(col, raw) is None:
        return False
    try:
        decrypt(row)
        return True
    except UnknownDataKeyError:
        return False


def _from_plain(t, raw):
    """The Python value of a plaintext cell as the driver returned it."""
    if isinstance(t, EncryptedJSON):
        return json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    inner = t.type_
    py = _python_type(inner)
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw)
        if py is bytes:
            return raw
        raw = raw.decode("utf-8")
    if py is None or (isinstance(raw, py) and not (py is int and isinstance(raw, bool))):
        return raw
    if py is bool:
        return str(raw).lower() in ("1", "t", "true", "y", "yes")
    if py in (dict, list) or isinstance(inner, JSON):
        return json.loads(raw)
    if py is _dt.datetime:
        return _dt.datetime.fromisoformat(str(raw))
    if py is _dt.date:
        return _dt.date.fromisoformat(str(raw))
    if py is _dt.time:
        return _dt.time.fromisoformat(str(raw))
    if py is uuid.UUID:
        return uuid.UUID(str(raw))
    if py is decimal.Decimal:
        return decimal.Decimal(str(raw))
    return py(raw)


def _python_type(inner):
    if isinstance(inner, JSON):
        return dict
    try:
        return inner.python_type
    except NotImplementedError:
        return None


def _to_plain(t, value, dialect):
    """The plaintext cell for ``value``: text bytes on PostgreSQL/MariaDB (cast by
    the closing ALTER), the plain type's own form on SQLite."""
    if isinstance(t, EncryptedJSON):
        return value
    if dialect.name == "sqlite":
        proc = t.type_.dialect_impl(dialect).bind_processor(dialect)
        return proc(value) if proc else value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, (dict, list)) or isinstance(t.type_, JSON):
        return json.dumps(value, ensure_ascii=False).encode("utf-8")
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat().encode("ascii")
    return str(value).encode("utf-8")


def _column_type(engine: Engine, col: Column) -> str:
    for info in inspect(engine).get_columns(col.table.name, schema=col.table.schema):
        if info["name"] == col.name:
            return str(info["type"]).lower()
    raise EncryptedColumnError(f"column {col.table.name}.{col.name} does not exist")


def _quoted(engine: Engine, col: Column) -> tuple[str, str]:
    prep = engine.dialect.identifier_preparer
    return prep.format_table(col.table), prep.quote(col.name)


def _alter_to_binary(engine: Engine, col: Column) -> None:
    name = engine.dialect.name
    current = _column_type(engine, col)
    table, c = _quoted(engine, col)
    if name == "postgresql" and current != "bytea":
        sql = f"ALTER TABLE {table} ALTER COLUMN {c} TYPE bytea USING convert_to({c}::text, 'UTF8')"
    elif name in ("mysql", "mariadb") and "binary" not in current and "blob" not in current:
        ddl = col.type.dialect_impl(engine.dialect).compile(dialect=engine.dialect)
        sql = f"ALTER TABLE {table} MODIFY {c} {ddl} {'NULL' if col.nullable else 'NOT NULL'}"
    else:
        return  # SQLite stores any value in any column; already binary elsewhere
    with engine.begin() as conn:
        conn.exec_driver_sql(sql)


def _alter_to_plain(engine: Engine, col: Column) -> None:
    name = engine.dialect.name
    current = _column_type(engine, col)
    if not any(b in current for b in ("bytea", "binary", "blob")):
        return  # already plain (a rerun)
    table, c = _quoted(engine, col)
    inner = _type(col).type_
    ddl = inner.compile(dialect=engine.dialect)
    if name == "postgresql":
        sql = (f"ALTER TABLE {table} ALTER COLUMN {c} TYPE {ddl} "
               f"USING CAST(convert_from({c}, 'UTF8') AS {ddl})")
    elif name in ("mysql", "mariadb"):
        sql = f"ALTER TABLE {table} MODIFY {c} {ddl} {'NULL' if col.nullable else 'NOT NULL'}"
    else:
        return
    with engine.begin() as conn:
        conn.exec_driver_sql(sql)


def encrypt_column(engine: Engine, column, *, batch_size: int = 500, alter: bool = True,
                   progress: bool = True) -> int:
    """Encrypt an existing plaintext column in place.

    ``column`` is the column as the model now declares it (an encrypted type);
    the table still holds plaintext.  With ``alter``, first changes the column's
    SQL type to the encrypted type's binary storage (keeping the bytes of the
    text form).  Values already encrypted are skipped, so reruns resume.
    Returns values encrypted.
    """
    install_listeners()
    col = _column(column)
    t = _type(col)
    with engine.begin() as conn:
        _TABLE.create(conn, checkfirst=True)
    if alter and isinstance(t, EncryptedType):
        _alter_to_binary(engine, col)
    raw_type = _raw_type(col, engine.dialect) if isinstance(t, EncryptedJSON) else \
        sa_types.NullType()
    done = 0
    with _bar(_count(engine, col), f"encrypt {t.key_scope()}", progress) as bar:
        for conn, rows in _pages(engine, col, raw_type, batch_size):
            decrypt, encrypt = _processors(t, conn.dialect)
            items = [(row, encrypt(_from_plain(t, row[-1]), row)) for row in rows
                     if not _is_encrypted(col, row, decrypt)]
            _write_many(conn, col, _raw_type(col, conn.dialect), items, check_old=False)
            done += len(items)
            bar.update(len(rows))
    return done


def decrypt_column(engine: Engine, column, *, batch_size: int = 500, alter: bool = True,
                   progress: bool = True) -> int:
    """Decrypt a column in place, for leaving the product.

    Writes each value's plaintext, then (``alter``) changes the SQL type back to
    the type the encrypted column declared (``EncryptedType(String(50))`` ->
    VARCHAR(50)).  Values already plaintext are skipped, so reruns resume.
    Afterwards declare the column with its plain type.  Returns values decrypted.
    """
    install_listeners()
    col = _column(column)
    t = _type(col)
    raw_type = _raw_type(col, engine.dialect) if isinstance(t, EncryptedJSON) else \
        sa_types.NullType()
    done = 0
    with _bar(_count(engine, col), f"decrypt {t.key_scope()}", progress) as bar:
        for conn, rows in _pages(engine, col, raw_type, batch_size):
            decrypt, _ = _processors(t, conn.dialect)
            items = [(row, _to_plain(t, decrypt(row), conn.dialect)) for row in rows
                     if _is_encrypted(col, row, decrypt)]
            _write_many(conn, col, raw_type, items, check_old=False)
            done += len(items)
            bar.update(len(rows))
    if alter and isinstance(t, EncryptedType):
        _alter_to_plain(engine, col)
    return done
