"""The fleet's shared GitHub budget in the crawler database: one `github_budgets` row per
rate-limit owner, which every crawler of the fleet reads before a request and merges what the
answers say into (the `SharedBudget` of `crawler_service.github.budget`)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from common.clock import Clock, SystemClock
from common.db import runs_to_end
from crawler_service.data.models import GitHubBudget, GitHubSlot
from crawler_service.github.budget import BudgetState


@runs_to_end
class BudgetStore:
    """`SharedBudget` on the crawler database (SQLite for one crawler, PostgreSQL for a fleet)."""

    def __init__(self, engine: AsyncEngine, clock: Clock | None = None) -> None:
        self.engine = engine
        self.clock: Clock = clock or SystemClock()
        #: The owners whose slot rows this process made, and how many.
        self._slots_made: dict[str, int] = {}

    async def load_budget(self, owner: str) -> BudgetState | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(
                        GitHubBudget.remaining, GitHubBudget.reset_at, GitHubBudget.paused_until
                    ).where(GitHubBudget.owner == owner)
                )
            ).first()
        return None if row is None else BudgetState(row[0], row[1], row[2])

    async def save_budget(self, owner: str, state: BudgetState) -> None:
        values = {
            "owner": owner,
            "remaining": state.remaining,
            "reset_at": state.reset_at,
            "paused_until": state.paused_until,
            "updated_at": self.clock.now(),
        }
        async with self.engine.begin() as conn:
            insert: Any = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            stmt = insert(GitHubBudget).values(**values)
            await conn.execute(
                stmt.on_conflict_do_update(index_elements=["owner"], set_=_merged(stmt.excluded))
            )

    async def reserve_request(self, owner: str, now: float) -> bool:
        table = GitHubBudget.__table__.c
        async with self.engine.begin() as conn:
            taken = await conn.execute(
                sa.update(GitHubBudget)
                .where(
                    GitHubBudget.owner == owner,
                    sa.or_(table.remaining > 0, table.reset_at <= now),
                )
                .values(remaining=table.remaining - 1)
            )
        return bool(taken.rowcount)

    async def acquire_slot(
        self, owner: str, limit: int, holder: str, now: float, ttl: float
    ) -> int | None:
        slots = GitHubSlot.__table__.c
        free = (
            sa.select(slots.slot)
            .where(
                slots.owner == owner,
                slots.slot < limit,
                sa.or_(slots.holder.is_(None), slots.expires_at <= now),
            )
            .order_by(slots.slot)
            .limit(1)
            # PostgreSQL: crawlers taking slots at once take different ones, none waits; SQLite
            # serializes the writers anyway (the clause is not rendered there).
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        async with self.engine.begin() as conn:
            if owner not in self._slots_made or self._slots_made[owner] < limit:
                await self._make_slots(conn, owner, limit)
            taken = await conn.execute(
                sa.update(GitHubSlot)
                .where(slots.owner == owner, slots.slot == free)
                .values(holder=holder, expires_at=now + ttl)
                .returning(slots.slot)
            )
            slot = taken.scalar()
        return None if slot is None else int(slot)

    async def release_slot(self, owner: str, slot: int, holder: str) -> None:
        slots = GitHubSlot.__table__.c
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(GitHubSlot)
                .where(slots.owner == owner, slots.slot == slot, slots.holder == holder)
                .values(holder=None, expires_at=None)
            )

    async def _make_slots(self, conn: Any, owner: str, limit: int) -> None:
        """The owner's slot rows 0..limit-1, once per process (a larger limit elsewhere in the
        fleet adds rows this crawler never takes: it counts only `slot < limit`)."""
        insert: Any = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        rows = [{"owner": owner, "slot": slot} for slot in range(limit)]
        await conn.execute(insert(GitHubSlot).values(rows).on_conflict_do_nothing())
        self._slots_made[owner] = limit


def _merged(new: Any) -> dict[str, Any]:
    """`BudgetState.merge` in SQL, so that concurrent writers never loosen the stored state: the
    later pause wins; a later reset replaces the count, the same reset keeps the lower count."""
    old = GitHubBudget.__table__.c
    new_reset, old_reset = sa.func.coalesce(new.reset_at, 0.0), sa.func.coalesce(old.reset_at, 0.0)
    lower = new.remaining.is_not(None) & (old.remaining.is_(None) | (new.remaining < old.remaining))
    later_pause = sa.func.coalesce(new.paused_until, 0.0) > sa.func.coalesce(old.paused_until, 0.0)
    return {
        "remaining": sa.case(
            (new_reset > old_reset, new.remaining),
            ((new_reset == old_reset) & lower, new.remaining),
            else_=old.remaining,
        ),
        "reset_at": sa.case((new_reset > old_reset, new.reset_at), else_=old.reset_at),
        "paused_until": sa.case((later_pause, new.paused_until), else_=old.paused_until),
        "updated_at": new.updated_at,
    }
