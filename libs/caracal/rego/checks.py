"""What a Rego worker process does with regopy: check one module, evaluate a set of modules.

Runs only inside a worker (caracal.rego.worker): regopy is a C++ library, and some misuse or some
module (very deep nesting) ends the process rather than raising, so none of this runs in the API.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import regopy

from caracal.rego.rules import PACKAGE, RESULT_RULE, module_findings, module_warnings, parse_error_code
from caracal.rego.tree import Node, NotationError, line_and_column, read_tree
from caracal.rego.verdicts import EvaluationFailed, RegoCheck

MODULE_NAME = "policy.rego"
ENTRYPOINT = f"{PACKAGE.replace('.', '/')}/{RESULT_RULE}"
_STRUCTURE = "_structure.trieste"  # the module's last reader pass: its complete parse


def _refused(code: str, source: bytes, offset: int | None, message: str | None = None) -> RegoCheck:
    line, column = line_and_column(source, offset) if offset is not None else (None, None)
    return RegoCheck(ok=False, code=code, line=line, column=column, message=message)


def _interpreter(debug_dir: Path | None = None) -> regopy.Interpreter:
    interpreter = regopy.Interpreter()
    interpreter.log_level = regopy.LogLevel.NONE
    if debug_dir is not None:
        # debug mode writes every pass's tree: the only parsed form regopy gives out
        interpreter.set_debug_path(str(debug_dir))
        interpreter.debug_enabled = True
        interpreter.well_formed_checks_enabled = False  # debug mode would check every pass too
    return interpreter


def _structure(debug_dir: Path) -> Node | None:
    found = sorted((debug_dir / "module0").glob(f"*{_STRUCTURE}"))
    return read_tree(found[-1].read_bytes()) if found else None


def _first_error(text: str) -> tuple[str, int | None, Node | None]:
    """The first error of an error sequence: rego-cpp's message, its offset, the blamed tree."""
    try:
        tree = read_tree(text.encode())
    except NotationError:
        return text.strip()[:200], None, None
    error = next((node for node in tree.walk() if node.kind == "error"), None)
    if error is None:
        return text.strip()[:200], None, None
    message = error.first("errormsg")
    return (message.text or "" if message else "", error.offset, error.first("errorast"))


def _parse_failure(error: str | None, source: bytes) -> RegoCheck:
    message, offset, where = _first_error(error or "the module could not be read")
    return _refused(parse_error_code(message, where), source, offset, message)


def check_module(content: str, debug_dir: Path) -> RegoCheck:
    """Parse and compile (never evaluate) one module, then judge its parse by the contract's rules."""
    if not content.strip():
        return RegoCheck(ok=False, code="empty_policy")
    source = content.encode()
    shutil.rmtree(debug_dir, ignore_errors=True)
    debug_dir.mkdir(parents=True)
    error = None
    try:
        interpreter = _interpreter(debug_dir)
        interpreter.add_module(MODULE_NAME, content)  # in debug mode this parses, dumping the tree
        interpreter.debug_enabled = False  # the compiler's own passes need no dump: 2x faster
        interpreter.build(None, [ENTRYPOINT])
    except regopy.RegoError as exc:
        error = str(exc)
    tree = _structure(debug_dir)
    if tree is None:
        return _parse_failure(error, source)
    finding = module_findings(tree)
    if finding is not None:
        return _refused(finding.code, source, finding.offset, finding.message)
    if error is not None:
        message, offset, _ = _first_error(error)
        return _refused("compile_error", source, offset, message)
    return RegoCheck(ok=True, warnings=module_warnings(tree))


def evaluate_modules(modules: Mapping[str, str], value: object, query: str) -> object:
    """The query's value over the modules and the input (`None`: no input); None when undefined."""
    interpreter = _interpreter()
    try:
        for name, content in modules.items():
            interpreter.add_module(name, content)
        if value is not None:
            interpreter.set_input(regopy.Input(value))
        output = interpreter.query(query)
    except regopy.RegoError as exc:
        raise EvaluationFailed(_first_error(str(exc))[0]) from None
    except ValueError:  # regopy reads an output holding an error value as broken JSON
        raise EvaluationFailed("the evaluation produced an error value") from None
    if not output.ok():
        raise EvaluationFailed(_first_error(str(output))[0] or "the evaluation failed")
    expressions = output.results[0].expressions if output.results else []
    return expressions[0] if expressions else None
