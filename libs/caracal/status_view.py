"""How `caracal status` shows its facts: one rich screen for people, one JSON object for scripts."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from caracal.health_facts import LockHolder
from caracal.status import Status, StreamFacts

PIPE_WIDTH = 160  # when piped (no terminal to measure), wide enough that table rows stay one line


def print_json(status: Status) -> None:
    print(json.dumps(status.as_json(), indent=2, default=str))


def print_screen(status: Status) -> None:
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = PIPE_WIDTH
    verdict = "[green]healthy[/]" if status.healthy else "[red]degraded[/]"
    console.print(f"[bold]Caracal status[/]: {verdict}")
    console.print(f"  version    {status.version}")
    console.print(f"  database   {status.database}")
    console.print(f"  schema     {_schema_line(status.migration)}")
    console.print(f"  redis      {status.redis}")
    console.print(_streams_table(status.streams))
    for line in _reaper_lines(status.reaper):
        console.print(f"  {line}")
    if status.healthy:
        console.print("verdict: healthy")
    else:
        console.print("verdict: degraded")
        for reason in status.reasons:
            console.print(f"  - {reason}", markup=False)


def _schema_line(migration: dict[str, object]) -> str:
    state, current, head = migration["state"], migration["current"], migration["head"]
    if state == "up to date":
        return f"up to date ({head})"
    return f"{state} (database at {current}, the code ships {head})"


def _holder(holder: LockHolder | None) -> str:
    if holder is None:
        return "-"
    client = f" from {holder.client_addr}" if holder.client_addr else ""
    return f"{holder.application_name or 'unnamed'} pid {holder.pid}{client}"


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


def _streams_table(streams: list[StreamFacts]) -> Table:
    table = Table(title="Outbox streams", title_justify="left")
    headers = (
        "stream",
        "pending",
        "oldest pending",
        "dead",
        "lease held by",
        "in redis",
        "dispatched",
        "failures",
    )
    for header in (*headers, "last lag"):
        table.add_column(header, no_wrap=True)
    for s in streams:
        table.add_row(
            s.stream,
            str(s.pending),
            f"{s.oldest_pending_s:.1f} s" if s.pending else "-",
            str(s.dead),
            _holder(s.lease),
            _count(s.length),
            _count(s.dispatched),
            _count(s.failures),
            "-" if s.last_lag_s is None else f"{s.last_lag_s * 1000:.0f} ms",
        )
    return table


def _reaper_lines(reaper: dict[str, object]) -> list[str]:
    running = reaper["running_now"]
    assert isinstance(running, dict)
    jobs = ", ".join(f"{name} ({_holder(holder)})" for name, holder in running.items()) or "none"
    retention_h = float(str(reaper["outbox_retention_s"])) / 3600
    oldest_h = float(str(reaper["outbox_oldest_dispatched_s"])) / 3600
    return [
        "Reaper",
        f"  job locks held:   {jobs}",  # held only while a job runs: a snapshot
        f"  audit sealer:     newest sealed_at {reaper['audit_newest_sealed_at'] or 'never'}; "
        f"{reaper['audit_unsealed']} row(s) unsealed, oldest {reaper['audit_oldest_unsealed_s']:.0f} s",
        f"  outbox retention: oldest delivered row {oldest_h:.1f} h old (retention {retention_h:.0f} h)",
        f"  DCR collector:    newest archived DCR client {reaper['dcr_newest_archived_at'] or 'none'}; "
        f"{reaper['dcr_overdue']} overdue",
        f"  session reaper:   {reaper['sessions_overdue']} active session(s) overdue for expiry",
        *_last_run_lines(reaper.get("last_runs")),
    ]


def _last_run_lines(runs: object) -> list[str]:
    """The reaper's own reports (Redis); absent when Redis could not be read."""
    if not isinstance(runs, dict):
        return ["  last runs:        unknown (Redis not read)"]
    lines = []
    for job, run in runs.items():
        when = (
            f"{run['last_success']} ({run['age_s']:.0f} s ago)" if run["last_success"] else "never reported"
        )
        lines.append(f"  last success:     {job:<15} {when}; {run['runs']} runs, {run['failures']} failures")
    return lines
