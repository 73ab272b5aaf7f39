"""What a Rego worker answers: a module's verdict, an evaluation's failure (no regopy needed here)."""

from __future__ import annotations

from dataclasses import dataclass

READY = ("ready",)  # a worker's first message, once regopy is loaded


@dataclass(frozen=True)
class RegoCheck:
    """A module's verdict: ok with warnings, or the contract's code and where it applies."""

    ok: bool
    code: str | None = None
    line: int | None = None
    column: int | None = None
    message: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def detail(self) -> str | None:
        """The code first (what the contract's clients compare), then where and why."""
        if self.code is None:
            return None
        where = f" at line {self.line}, column {self.column}" if self.line is not None else ""
        why = f": {self.message}" if self.message else ""
        return f"{self.code}{where}{why}"


class EvaluationFailed(Exception):
    """The modules do not compile together, or evaluating the query raised an error."""
