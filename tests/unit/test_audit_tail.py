"""Event streams read the audit trail through one reader per process: however many streams are
open, the trail is queried once per round; every stream still gets every row of its owner (or
every row) once, in order, from wherever it starts, its backlog included."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import anyio
from litestar.datastructures import State

from api.audit_tail import AuditTail
from api.event_stream import follow
from infra.backends.memory import MemoryBackend
from ledger.audit_trail import AuditTrail
from ledger.key_ledger import KeyLedger
from projections.audit_trail.view import AuditRow


def mint(ledger: KeyLedger, owner: str, n: int) -> None:
    for i in range(n):
        ledger.mint(
            owner_id=owner, name=f"k{i}", scopes=["books:read"], expires_in_days=None, actor="u"
        )


def positions(rows: Sequence[AuditRow]) -> bytes:
    return b"".join(b"%d," % row.position for row in rows)


def test_many_streams_one_reader_every_row_once_in_order() -> None:
    ledger = KeyLedger()
    audit = AuditTrail(ledger, MemoryBackend().audit_view(ledger))
    mint(ledger, "alice", 7)
    mint(ledger, "bob", 5)
    queries: list[str | None] = []
    rows_after = audit.rows_after

    def counted(position: int, limit: int, owner_id: str | None = None) -> list[AuditRow]:
        queries.append(owner_id)
        return rows_after(position, limit, owner_id)

    audit.rows_after = counted  # type: ignore[method-assign]
    # Keeps 4 rows, reads 3 at a time: streams from the start read their backlog themselves
    tail = AuditTail(audit, poll_interval=0.01, keep=4, batch=3)
    state = State({"audit_tail": tail, "open_streams": 0, "streams_by_owner": {}})
    request: Any = SimpleNamespace(app=SimpleNamespace(state=state))
    streams = [("alice", 0)] * 8 + [(None, 0)] * 8 + [("bob", 3)] * 4
    seen: list[list[int]] = [[] for _ in streams]

    def expected(owner: str | None, after: int) -> list[int]:
        rows = rows_after(after, 10_000, owner)
        return [row.position for row in rows]

    async def read(i: int, owner: str | None, start: int) -> None:
        stream = follow(
            request,
            audit,
            start,
            owner_id=owner,
            render=positions,
            opening=b"",
            heartbeat_interval=60,
        )
        async for chunk in stream:
            seen[i] += [int(p) for p in chunk.decode().split(",") if p]
            if len(seen[i]) == len(expected(owner, start)) and minted_all:
                break
        await stream.aclose()

    minted_all = False

    async def main() -> None:
        nonlocal minted_all
        async with anyio.create_task_group() as group:
            for i, (owner, start) in enumerate(streams):
                group.start_soon(read, i, owner, start)
            await anyio.sleep(0.2)
            # Quiet: one query a round, whatever the number of streams
            before, rounds = len(queries), tail.rounds
            await anyio.sleep(0.3)
            assert len(queries) - before <= (tail.rounds - rounds) + 1
            assert tail.rounds - rounds >= 5
            # New rows reach every stream, live
            mint(ledger, "alice", 3)
            mint(ledger, "bob", 2)
            minted_all = True

    async def bounded() -> None:
        with anyio.fail_after(10):
            await main()

    anyio.run(bounded)
    for (owner, start), got in zip(streams, seen, strict=True):
        assert got == expected(owner, start), (owner, start)
    assert state.open_streams == 0 and state.streams_by_owner == {}
