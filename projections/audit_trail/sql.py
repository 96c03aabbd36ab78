"""The audit trail's queries as SQL, for the SQLite and PostgreSQL views alike."""

from __future__ import annotations

from typing import Any

from projections.audit_trail.view import AuditQuery


def where(q: AuditQuery, mark: str, key: Any, at: Any) -> tuple[list[str], list[Any]]:
    """The query's conditions as SQL with `mark` placeholders, and their parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if q.owner_id is not None:
        clauses.append(f"owner_id = {mark}")
        params.append(q.owner_id)
    if q.key_id is not None:
        clauses.append(f"key_id = {mark}")
        params.append(key(q.key_id))
    if q.types:
        clauses.append(f"type IN ({', '.join([mark] * len(q.types))})")
        params.extend(q.types)
    if q.since is not None:
        clauses.append(f"at >= {mark}")
        params.append(at(q.since))
    if q.until is not None:
        clauses.append(f"at < {mark}")
        params.append(at(q.until))
    if q.cursor is not None:
        clauses.append(f"position {'<' if q.newest_first else '>'} {mark}")
        params.append(q.cursor)
    return clauses, params


def tail(q: AuditQuery, clauses: list[str], mark: str) -> str:
    where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
    return f"{where}ORDER BY position {'DESC' if q.newest_first else 'ASC'} LIMIT {mark}"
