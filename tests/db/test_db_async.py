"""AsyncSession on aiosqlite and psycopg: after warm_up_async no KMS call
happens at all, and warm-up's own KMS calls run off the event-loop thread."""
from __future__ import annotations

import asyncio
import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from integrations.encrypted_columns import EncryptedType, warm_up_async


def _model(unique):
    class Base(DeclarativeBase):
        pass

    class Secret(Base):
        __tablename__ = unique("secrets")
        id: Mapped[int] = mapped_column(primary_key=True)
        value: Mapped[str] = mapped_column(EncryptedType(sa.String(50)))
        tag: Mapped[str] = mapped_column(EncryptedType(sa.String(50), deterministic=True))

    return Base, Secret


@pytest.fixture(params=["aiosqlite", "psycopg"])
def async_url(request, tmp_path):
    if request.param == "aiosqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"
    return request.getfixturevalue("pg_module_url")  # postgresql+psycopg works sync and async


def test_async_session_with_warm_up(async_url, counting_kms, fresh_caches, unique):
    Base, Secret = _model(unique)

    async def main():
        engine = create_async_engine(async_url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            loop_thread = threading.get_ident()
            calls = await warm_up_async(engine, Base.metadata)
            assert calls == 2 and counting_kms.total() == 2
            assert loop_thread not in counting_kms.threads  # KMS ran in worker threads
            counting_kms.reset()
            async with AsyncSession(engine) as s:
                s.add_all([Secret(id=i, value=f"v{i}", tag="t" if i % 2 else "u") for i in range(1, 51)])
                await s.commit()
            async with AsyncSession(engine) as s:
                rows = (await s.scalars(sa.select(Secret).where(Secret.tag == "t"))).all()
                assert sorted(r.id for r in rows) == list(range(1, 51, 2))
                assert {r.value for r in rows} == {f"v{i}" for i in range(1, 51, 2)}
            assert counting_kms.total() == 0  # warm: no KMS I/O on the event loop

            fresh_caches()  # a new process: warm-up loads the stored keys
            assert await warm_up_async(engine, Base.metadata) == 3  # 2 Decrypt + 1 new write key
            assert loop_thread not in counting_kms.threads
            counting_kms.reset()
            async with AsyncSession(engine) as s:
                assert len((await s.scalars(sa.select(Secret))).all()) == 50
                s.add(Secret(id=99, value="late", tag="t"))
                await s.commit()
            assert counting_kms.total() == 0
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.drop_all)
        finally:
            await engine.dispose()

    asyncio.run(main())


def test_cold_async_use_still_keeps_kms_off_the_loop(async_url, counting_kms, unique):
    Base, Secret = _model(unique)

    async def main():
        engine = create_async_engine(async_url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            loop_thread = threading.get_ident()
            async with AsyncSession(engine) as s:
                s.add(Secret(id=1, value="cold", tag="x"))
                await s.commit()
            assert counting_kms.total() == 2 and loop_thread not in counting_kms.threads
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.drop_all)
        finally:
            await engine.dispose()

    asyncio.run(main())
