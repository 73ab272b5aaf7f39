"""The contract's rules for a policy module (CONTRACT.md §4.5), judged on rego-cpp's parse of it.

The original checked the text with regular expressions; here every rule reads the parsed module
(caracal.rego.tree), so a `package` inside a string, a `result` in a comment or an `http.send`
in a raw string fool nothing. Findings keep the contract's codes and add where they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from caracal.rego.tree import Node

PACKAGE = "caracal.authz"
RESULT_RULE = "result"
FORBIDDEN_BUILTINS = frozenset(
    {
        "http.send",
        "net.lookup_ip_addr",
        "net.cidr_contains",
        "net.cidr_intersects",
        "net.cidr_expand",
        "net.cidr_merge",
        "opa.runtime",
        "rand.intn",
        "time.now_ns",
    }
)
ALLOWS_ACCESS = "default_result_allows_access"
NO_SCOPE_CHECK = "missing_requested_scope_check"
REQUESTED_SCOPES = "requested_scopes"

# rego-cpp's parse errors that are one of the contract's codes; any other is `syntax_error`.
_PARSE_CODES = {
    "this is unclosed": "unbalanced_delimiters",
    "Invalid file": "missing_package_declaration",
    "Invalid package declaration": "invalid_package_name",
}
# errors rego-cpp raises on a malformed package reference (`package`, `package a.`)
_PACKAGE_ERRORS = frozenset({"Missing reference", "Invalid reference argument"})


@dataclass(frozen=True)
class Finding:
    """A broken rule: the contract's code and the byte offset of what broke it (None: the module)."""

    code: str
    offset: int | None = None
    message: str | None = None


def parse_error_code(message: str, where: Node | None) -> str:
    """The contract's code for a parse error (`where`: the part of the tree rego-cpp blames)."""
    if message in _PARSE_CODES:
        return _PARSE_CODES[message]
    in_package = where is not None and any(node.kind == "rego-package" for node in where.walk())
    if message in _PACKAGE_ERRORS and in_package:
        return "invalid_package_name"
    return "syntax_error"


def dotted_name(ref: Node | None) -> str | None:
    """`a.b.c` for a reference made of a variable and dot-steps only; None for anything else."""
    if ref is None or ref.kind != "rego-ref":
        return None
    head = ref.only("rego-refhead", "rego-var")
    steps = ref.first("rego-refargseq")
    if head is None or head.text is None or steps is None:
        return None
    parts = [head.text]
    for step in steps.children:
        var = step.first("rego-var") if step.kind == "rego-refargdot" else None
        if var is None or var.text is None:
            return None
        parts.append(var.text)
    return ".".join(parts)


def _rules(module: Node) -> Iterator[Node]:
    policy = module.first("rego-policy")
    yield from (rule for rule in (policy.children if policy else []) if rule.kind == "rego-rule")


def _rule_name(rule: Node) -> str | None:
    var = rule.only("rego-rulehead", "rego-ruleref", "rego-ref", "rego-refhead", "rego-var")
    return var.text if var is not None else None


def _is_function(rule: Node) -> bool:
    head = rule.first("rego-rulehead")
    return head is not None and head.first("rego-ruleheadfunc") is not None


def _forbidden_call(module: Node) -> Finding | None:
    for node in module.walk():
        if node.kind == "rego-exprcall":
            name = dotted_name(node.first("rego-ref"))
            if name in FORBIDDEN_BUILTINS:
                return Finding(f"forbidden_builtin:{name}", node.offset)
    return None


def _package_finding(top: Node) -> tuple[Node | None, Finding | None]:
    module = top.first("rego-module")
    package = module.first("rego-package") if module is not None else None
    if module is None or package is None:
        return None, Finding("missing_package_declaration")
    name = dotted_name(package.first("rego-ref"))
    if name is None:
        return None, Finding("invalid_package_name", package.offset)
    return module, None


def module_findings(top: Node) -> Finding | None:
    """The first broken rule in the contract's order (after the parse itself), or None."""
    module, finding = _package_finding(top)
    if module is None:
        return finding
    forbidden = _forbidden_call(module)
    if forbidden is not None:
        return forbidden
    package = module.first("rego-package")
    if package is not None and dotted_name(package.first("rego-ref")) != PACKAGE:
        return Finding("must_use_package_caracal_authz", package.offset)
    results = [r for r in _rules(module) if _rule_name(r) == RESULT_RULE and not _is_function(r)]
    if not results:
        return Finding("must_define_result_rule")
    return None


def _is_default(rule: Node) -> bool:
    return len(rule.children) > 0 and rule.children[0].kind == "rego-true"


def _string(expr: Node | None) -> str | None:
    token = expr.only("rego-term", "rego-scalar", "rego-string", "rego-STRING") if expr else None
    return token.text.strip('"`') if token is not None and token.text is not None else None


def _allows(rule: Node) -> bool:
    value = rule.only("rego-rulehead", "rego-ruleheadcomp", "rego-expr", "rego-term", "rego-object")
    for item in value.children if value is not None else []:
        if len(item.children) == 2:
            key, val = item.children
            if _string(key) == "decision" and _string(val) == "allow":
                return True
    return False


def _names_requested_scopes(module: Node) -> bool:
    for node in module.walk():
        if node.kind == "rego-var" and node.text == REQUESTED_SCOPES:
            return True
        if node.kind == "rego-refargbrack" and any(
            _string(child) == REQUESTED_SCOPES for child in node.children
        ):
            return True
    return False


def module_warnings(top: Node) -> tuple[str, ...]:
    """The contract's warnings for a valid module (CONTRACT.md §4.5 with the §8 correction)."""
    module = top.first("rego-module")
    if module is None:
        return ()
    warnings = []
    defaults = [r for r in _rules(module) if _rule_name(r) == RESULT_RULE and _is_default(r)]
    if any(_allows(rule) for rule in defaults):
        warnings.append(ALLOWS_ACCESS)
    if not _names_requested_scopes(module):
        warnings.append(NO_SCOPE_CHECK)
    return tuple(warnings)
