"""Piccolo's SQLite engine with long-lived connections: a few readers and one writer.

Piccolo's ``SQLiteEngine`` opens a fresh aiosqlite connection (a thread, the file, the
pragmas: about 2 ms) for every query outside a transaction and for every transaction; a
read by id cost five or six of them. This engine keeps its connections instead:

- **readers**: up to ``pool_size`` connections for statements that only read (a ``SELECT``
  outside any transaction). They run in autocommit mode and every statement is stepped
  to its end before the connection goes back, so no read transaction stays open between
  uses: each read sees everything committed before it started, by this process or any
  other. WAL mode (set by :func:`server.db.start`) lets them read while the writer writes.
  They are ``query_only``: a write that reached one by mistake fails instead of slipping
  past the writer's lock.
- **one writer** for transactions and for writes outside one, lent to one task at a time
  under an asyncio lock. Transactions still begin as they ask (``BEGIN IMMEDIATE`` for
  every write transaction here), so SQLite's own write lock still queues the writers of
  other processes on the same file behind this one and this one behind them.

Waiting for the writer is bounded by the busy timeout, as waiting for SQLite's write lock
is: past it the caller gets SQLite's own "database is locked" error, as it did when every
transaction had a connection of its own.

Connections belong to the event loop that opened them (the CLI and the tests run several
loops one after another); :meth:`close_connections` closes them, and the next query opens
what it needs again. Nothing here imports the application: the benchmark's baseline uses
the same engine, so the two are compared with the same connection handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiosqlite
from piccolo.engine.sqlite import SQLiteEngine, SQLiteTransaction, TransactionType, dict_factory
from piccolo.querystring import QueryString

DEFAULT_POOL_SIZE = 10

# A statement a reader may run: it starts with SELECT (or EXPLAIN/VALUES), or is a WITH
# that names no write. Anything else (INSERT, UPDATE, DELETE, PRAGMA, DDL) is the writer's.
_LEADING_COMMENTS = re.compile(r"^\s*(?:(?:--[^\n]*(?:\n|$)|/\*.*?\*/)\s*)*", re.DOTALL)
_READ_START = re.compile(r"(?:SELECT|EXPLAIN|VALUES)\b", re.IGNORECASE)
_WITH_START = re.compile(r"WITH\b", re.IGNORECASE)
_WRITE_WORD = re.compile(r"\b(?:INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)


def reads_only(sql: str) -> bool:
    """Whether ``sql`` may run on a reader (conservative: a doubt goes to the writer)."""
    body = sql[_LEADING_COMMENTS.match(sql).end() :]  # type: ignore[union-attr]  # the pattern matches the empty string
    if _READ_START.match(body):
        return True
    return bool(_WITH_START.match(body)) and not _WRITE_WORD.search(body)


@dataclass(frozen=True)
class SQLitePoolStatus:
    """How many connections this process holds on the file, and how many are lent out."""

    size: int  # reader connections at most (the writer is one more)
    readers_open: int
    readers_in_use: int
    writer_open: bool
    writer_in_use: bool

    @property
    def in_use(self) -> int:
        return self.readers_in_use + int(self.writer_in_use)


class _Connections:
    """One event loop's readers and writer."""

    def __init__(self, engine: PooledSQLiteEngine) -> None:
        self.engine = engine
        self.idle: list[aiosqlite.Connection] = []
        self.readers_open = 0
        self.readers_in_use = 0
        self.slots = asyncio.Semaphore(engine.pool_size)
        self.writer: aiosqlite.Connection | None = None
        self.write_lock = asyncio.Lock()
        self.closed = False

    # --- readers -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def reader(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self.slots:
            if self.idle:
                connection = self.idle.pop()
            else:
                connection = await self.engine.open_connection(read_only=True)
                self.readers_open += 1
            self.readers_in_use += 1
            clean = False
            try:
                yield connection
                clean = True
            finally:
                self.readers_in_use -= 1
                if clean and not self.closed:
                    self.idle.append(connection)
                else:
                    # A statement cut short (an error, a cancelled request) may not have
                    # been reset and so may hold a read snapshot open: never lend it again.
                    self.readers_open -= 1
                    await _close_soon(connection)

    async def prefill(self) -> None:
        """Open every reader now (a server's start), so that the first requests don't."""
        while self.readers_open < self.engine.pool_size:
            self.idle.append(await self.engine.open_connection(read_only=True))
            self.readers_open += 1

    # --- the writer ----------------------------------------------------------------------

    async def acquire_writer(self) -> aiosqlite.Connection:
        """The writer, for this task alone until :meth:`release_writer`."""
        timeout = self.engine.busy_timeout
        try:
            async with asyncio.timeout(timeout):
                await self.write_lock.acquire()
        except TimeoutError:
            raise sqlite3.OperationalError(
                f"database is locked (this process's writer stayed busy for {timeout:g} s)"
            ) from None
        try:
            if self.writer is None:
                self.writer = await self.engine.open_connection(read_only=False)
        except BaseException:
            self.write_lock.release()
            raise
        return self.writer

    async def release_writer(self, *, clean: bool) -> None:
        """Give the writer back; after a failure, first make sure no transaction is left
        open on it (or drop it: the next writer then opens a fresh connection)."""
        try:
            if not clean and self.writer is not None:
                await asyncio.shield(self._reset_writer(self.writer))
        finally:
            if self.closed and self.writer is not None:
                writer, self.writer = self.writer, None
                await _close_soon(writer)
            self.write_lock.release()

    async def _reset_writer(self, writer: aiosqlite.Connection) -> None:
        try:
            await writer.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            if "no transaction is active" in str(exc):
                return
            self._drop_writer(writer)
        except Exception:
            self._drop_writer(writer)

    def _drop_writer(self, writer: aiosqlite.Connection) -> None:
        if self.writer is writer:
            self.writer = None
        _close_later(writer)

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[aiosqlite.Connection]:
        """The writer for one statement outside a transaction (autocommit)."""
        connection = await self.acquire_writer()
        clean = False
        try:
            yield connection
            clean = True
        finally:
            await self.release_writer(clean=clean)

    # --- status and shutdown -------------------------------------------------------------

    def status(self) -> SQLitePoolStatus:
        return SQLitePoolStatus(
            size=self.engine.pool_size,
            readers_open=self.readers_open,
            readers_in_use=self.readers_in_use,
            writer_open=self.writer is not None,
            writer_in_use=self.write_lock.locked(),
        )

    async def close(self) -> None:
        """Close the idle connections now, and the others when they come back."""
        self.closed = True
        idle, self.idle = self.idle, []
        self.readers_open -= len(idle)
        for connection in idle:
            await connection.close()
        if self.writer is not None and not self.write_lock.locked():
            writer, self.writer = self.writer, None
            await writer.close()


# Connections closed from a context that may be cancelled: kept here until closed.
_CLOSING: set[asyncio.Future[None]] = set()


def _close_later(connection: aiosqlite.Connection) -> asyncio.Future[None]:
    closing = asyncio.ensure_future(connection.close())
    _CLOSING.add(closing)
    closing.add_done_callback(_CLOSING.discard)
    return closing


async def _close_soon(connection: aiosqlite.Connection) -> None:
    with contextlib.suppress(Exception):
        await asyncio.shield(_close_later(connection))


class WriterTransaction(SQLiteTransaction):
    """A transaction on the engine's writer, which it holds from ``BEGIN`` to the end.

    Piccolo's own transaction closes its connection at the end, and leaves it open (with
    the write lock held) when ``BEGIN`` is cancelled or ``COMMIT`` fails; this one rolls
    back whatever is left open and hands the writer on, in every case.
    """

    engine: PooledSQLiteEngine

    async def __aenter__(self) -> SQLiteTransaction:
        if self._parent is not None:
            return self._parent
        connections = self.engine.connections()
        self._connections = connections
        self.connection = await connections.acquire_writer()
        try:
            await self.begin()
        except BaseException:
            await connections.release_writer(clean=False)
            raise
        self.context = self.engine.current_transaction.set(self)
        return self

    async def begin(self) -> None:
        await self.connection.execute(f"BEGIN {self.transaction_type.value}")

    async def commit(self) -> None:
        await self.connection.execute("COMMIT")
        self._committed = True

    async def rollback(self) -> None:
        await self.connection.execute("ROLLBACK")
        self._rolled_back = True

    async def __aexit__(self, exception_type: Any, exception: Any, traceback: Any) -> bool:
        if self._parent is not None:
            return exception is None
        clean = False
        try:
            if exception is not None:
                if not self._rolled_back:
                    await self.rollback()
            elif not self._committed and not self._rolled_back:
                await self.commit()
            clean = True
        finally:
            self.engine.current_transaction.reset(self.context)
            await self._connections.release_writer(clean=clean)
        return exception is None


class PooledSQLiteEngine(SQLiteEngine):
    """``SQLiteEngine`` with long-lived reader connections and one writer (module doc)."""

    def __init__(
        self,
        path: str = "piccolo.sqlite",
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        timeout: float = 5.0,
        synchronous: str = "NORMAL",
        **connection_kwargs: Any,
    ) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, got {pool_size}")
        super().__init__(path=path, timeout=timeout, **connection_kwargs)
        self.pool_size = pool_size
        self.busy_timeout = timeout
        self.synchronous = synchronous
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Connections] = (
            weakref.WeakKeyDictionary()
        )

    # --- connections ---------------------------------------------------------------------

    async def open_connection(self, *, read_only: bool) -> aiosqlite.Connection:
        """A new connection with this engine's pragmas (the pool's; Piccolo's batches)."""
        connection = aiosqlite.connect(**self.connection_kwargs)
        # Pooled connections live as long as the process: their threads must not keep a
        # process that forgot to close them from exiting.
        thread = getattr(connection, "_thread", None)
        if thread is not None:
            thread.daemon = True
        await connection
        connection.row_factory = dict_factory  # type: ignore[assignment]  # Piccolo reads rows as dicts
        try:
            await connection.execute("PRAGMA foreign_keys = 1")
            # In WAL mode NORMAL never corrupts the database; a power cut (not a crash) may
            # lose the last commits. It saves an fsync per commit (server/db.py).
            await connection.execute(f"PRAGMA synchronous = {self.synchronous}")
            if read_only:
                await connection.execute("PRAGMA query_only = 1")
        except BaseException:
            await _close_soon(connection)
            raise
        return connection

    async def get_connection(self) -> aiosqlite.Connection:
        """A connection of its own (Piccolo's ``batch`` closes it when done)."""
        return await self.open_connection(read_only=False)

    def connections(self) -> _Connections:
        loop = asyncio.get_running_loop()
        found = self._by_loop.get(loop)
        if found is None or found.closed:
            found = self._by_loop[loop] = _Connections(self)
        return found

    async def prefill(self) -> None:
        """Open the writer and every reader now."""
        connections = self.connections()
        async with connections.writing():
            pass
        await connections.prefill()

    async def close_connections(self) -> None:
        """Close this loop's connections, and those left by loops that have ended."""
        loop = asyncio.get_running_loop()
        for owner, connections in list(self._by_loop.items()):
            if owner is loop or owner.is_closed():
                del self._by_loop[owner]
                await connections.close()

    def pool_status(self) -> SQLitePoolStatus:
        try:
            connections = self._by_loop.get(asyncio.get_running_loop())
        except RuntimeError:
            connections = None
        if connections is None:
            return SQLitePoolStatus(self.pool_size, 0, 0, False, False)
        return connections.status()

    # --- running statements --------------------------------------------------------------

    def transaction(
        self,
        transaction_type: TransactionType = TransactionType.deferred,
        allow_nested: bool = True,
    ) -> SQLiteTransaction:
        return WriterTransaction(
            engine=self, transaction_type=transaction_type, allow_nested=allow_nested
        )

    async def run_querystring(self, querystring: QueryString, in_pool: bool = False) -> Any:
        query, args = querystring.compile_string(engine_type=self.engine_type)
        return await self._run(
            query, args, querystring.query_type, querystring.table, shown=querystring.__str__
        )

    async def run_ddl(self, ddl: str, in_pool: bool = False) -> Any:
        return await self._run(ddl, [], "generic", None, shown=lambda: ddl)

    async def _run(
        self,
        query: str,
        args: list[Any],
        query_type: str,
        table: Any,
        *,
        shown: Any,
    ) -> Any:
        query_id = self.get_query_id()
        if self.log_queries:
            self.print_query(query_id=query_id, query=shown())
        transaction = self.current_transaction.get()
        if transaction is not None:
            response = await self._execute(transaction.connection, query, args, query_type, table)
        elif reads_only(query):
            async with self.connections().reader() as connection:
                response = await self._execute(connection, query, args, query_type, table)
        else:
            async with self.connections().writing() as connection:
                response = await self._execute(connection, query, args, query_type, table)
        if self.log_responses:
            self.print_response(query_id=query_id, response=response)
        return response

    async def _execute(
        self,
        connection: aiosqlite.Connection,
        query: str,
        args: list[Any],
        query_type: str,
        table: Any,
    ) -> Any:
        if query_type == "insert" and self.get_version_sync() < 3.35:
            # No RETURNING before SQLite 3.35 (Piccolo's own fallback).
            async with connection.execute(query, args) as cursor:
                await cursor.fetchall()
                pk = await self._get_inserted_pk(cursor, table)
                return [{table._meta.primary_key._meta.db_column_name: pk}]
        # Every row is fetched in the connection's thread, which ends the statement (and,
        # outside a transaction, the read snapshot or the autocommitted write) - in one
        # hand-off to that thread, where execute, fetch and close were three.
        return await connection.execute_fetchall(query, args)
