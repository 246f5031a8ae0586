"""Projects as the store knows them: every (entity, project) with runs that are not deleted, and the
series keys (metrics, system metrics) a project's charts offer.

A project has no row of its own: it exists while it has runs. One grouped query over ``runs``
(the unique index on ``(entity, project, run_id)`` serves the grouping).
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tracklog_server._entities import ProjectKey, ProjectSummary

from ._models import MetricSummaryRow, RunRow


def list_projects(session: Session, entity: str = "") -> list[ProjectSummary]:
    """Projects with at least one run that is not deleted, most recently started first."""
    latest = func.max(RunRow.created_at)
    stmt = (
        select(RunRow.entity, RunRow.project, func.count(), latest)
        .where(RunRow.deleted_at.is_(None))
        .group_by(RunRow.entity, RunRow.project)
        .order_by(latest.desc(), RunRow.entity, RunRow.project)
    )
    if entity:
        stmt = stmt.where(RunRow.entity == entity)
    return [
        ProjectSummary(entity=e, project=p, run_count=int(n), last_run_at=float(t or 0.0))
        for e, p, n, t in session.execute(stmt)
    ]


def project_series_keys(session: Session, project: ProjectKey) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The history keys with numeric values (charts) and the system metric keys of the project's
    runs that are not deleted, each sorted."""
    live = (RunRow.entity == project.entity, RunRow.project == project.project, RunRow.deleted_at.is_(None))
    metrics = session.execute(
        select(MetricSummaryRow.key)
        .join(RunRow, RunRow.pk == MetricSummaryRow.run_pk)
        .where(*live)
        .distinct()
        .order_by(MetricSummaryRow.key)
    ).scalars()
    system: set[str] = set()
    for keys in session.execute(select(RunRow.system_keys).where(*live)).scalars():
        system.update(k for k in keys or () if isinstance(k, str))
    return tuple(metrics), tuple(sorted(system))
