"""caracal.rego with real regopy in real worker processes: the contract's rules on the parsed
module, the parse notation, evaluation, the time limit, crashes and back-pressure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from caracal import rego
from caracal.errors import Overloaded
from caracal.rego import EvaluationFailed, RegoEngine
from caracal.rego.tree import line_and_column, read_tree
from tests.support import eventually

DEEP = "package caracal.authz\nresult := " + "[" * 100_000 + "]" * 100_000 + "\n"


@pytest_asyncio.fixture(autouse=True)
async def engine() -> AsyncIterator[RegoEngine]:
    yield rego.configure(workers=2, timeout_ms=3000, max_pending=8, max_bytes=256 * 1024)
    rego.shutdown()


@pytest.mark.parametrize(
    ("content", "code"),
    [
        ("   \n", "empty_policy"),
        ("# only a comment\n", "missing_package_declaration"),
        ("result := 1\n", "missing_package_declaration"),
        ('package a["b"]\nresult := 1\n', "invalid_package_name"),
        ("package caracal.authz\nresult := (1\n", "unbalanced_delimiters"),
        ("package caracal.authz\nresult := 1 +* 2\n", "syntax_error"),
        ("package caracal.authz\nresult := time.now_ns()\n", "forbidden_builtin:time.now_ns"),
        (
            "package caracal.authz\nf(x) := net.cidr_merge(x)\nresult := 1\n",
            "forbidden_builtin:net.cidr_merge",
        ),
        # the contract's order: a forbidden builtin outranks a wrong package
        ("package other\nresult := opa.runtime()\n", "forbidden_builtin:opa.runtime"),
        ("package caracal.authz.inner\nresult := 1\n", "must_use_package_caracal_authz"),
        ("package caracal.authz\nresult(x) := x\n", "must_define_result_rule"),
        ("package caracal.authz\nallow := true\n", "must_define_result_rule"),
    ],
)
async def test_each_contract_rule_is_judged_on_the_parse(content: str, code: str) -> None:
    verdict = await rego.check(content)
    assert not verdict.ok
    assert verdict.code == code, verdict


@pytest.mark.parametrize(
    "content",
    [
        'package caracal.authz\n# http.send(x)\nresult := "time.now_ns()"\n',
        "package caracal.authz\nresult := `package other (`\n",
        'package caracal.authz\nresult.decision := "deny"\n',
        'package caracal.authz\nresult contains "deny" if true\n',
    ],
)
async def test_words_in_comments_and_strings_break_no_rule(content: str) -> None:
    """What the original's regular expressions got wrong: only code counts."""
    verdict = await rego.check(content)
    assert verdict.ok, verdict


async def test_a_finding_carries_line_and_column_in_its_detail() -> None:
    verdict = await rego.check('package caracal.authz\n\nresult := {"é": 1, "t": http.send({})}\n')
    assert (verdict.code, verdict.line, verdict.column) == ("forbidden_builtin:http.send", 3, 25)
    assert verdict.detail == "forbidden_builtin:http.send at line 3, column 25"


async def test_evaluate_answers_the_result_or_none_when_undefined() -> None:
    module = 'package caracal.authz\nresult := {"decision": "allow"} if input.user == "a"\n'
    assert await rego.evaluate({"p.rego": module}, {"user": "a"}) == {"decision": "allow"}
    assert await rego.evaluate({"p.rego": module}, {"user": "b"}) is None
    assert await rego.evaluate({"p.rego": module}, None) is None


async def test_evaluate_refuses_conflicting_results_and_bad_modules() -> None:
    with pytest.raises(EvaluationFailed):
        await rego.evaluate({"p.rego": "package caracal.authz\nresult := 1\nresult := 2\n"}, None)
    with pytest.raises(EvaluationFailed):
        await rego.evaluate({"p.rego": "package caracal.authz\nresult := [\n"}, None)


async def test_a_crash_of_the_interpreter_fails_the_call_and_a_new_worker_serves_the_next() -> None:
    """Very deep nesting ends rego-cpp with a segfault: in the worker, never in this process."""
    with pytest.raises(EvaluationFailed, match="stopped"):
        await rego.evaluate({"p.rego": DEEP}, None)
    assert await rego.evaluate({"p.rego": "package caracal.authz\nresult := 1\n"}, None) == 1


async def test_an_evaluation_past_the_time_limit_is_killed_and_refused(engine: RegoEngine) -> None:
    slow = "package caracal.authz\nresult := count([x | some x in numbers.range(1, 1000000000)])\n"
    rego.configure(workers=1, timeout_ms=300, max_pending=2, max_bytes=256 * 1024)
    with pytest.raises(EvaluationFailed, match="longer than 300 ms"):
        await rego.evaluate({"p.rego": slow}, None)
    assert (await rego.check("package caracal.authz\nresult := 1\n")).ok


async def test_calls_beyond_max_pending_are_refused_at_once_as_overloaded() -> None:
    engine = rego.configure(workers=1, timeout_ms=2000, max_pending=1, max_bytes=256 * 1024)
    slow = "package caracal.authz\nresult := count([x | some x in numbers.range(1, 1000000000)])\n"
    first = asyncio.ensure_future(engine.evaluate({"p.rego": slow}, None, rego.RESULT_QUERY))
    await eventually(lambda: engine.pending == 1, "the slow call holds the only slot")
    with pytest.raises(Overloaded):
        await rego.check("package caracal.authz\nresult := 1\n")
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)


def test_the_notation_reader_takes_texts_by_length_so_their_bytes_are_never_parsed() -> None:
    tree = read_tree(b'(top {} (rego-STRING 1:f|3|5:"a )"\n  (child 4:x (y))))')
    string = tree.children[0]
    assert (string.kind, string.source, string.offset, string.text) == ("rego-STRING", "f", 3, '"a )"')
    assert [c.kind for c in string.children] == ["child"] and string.children[0].text == "x (y"
    assert line_and_column("ab\ncé d".encode(), len("ab\ncé ".encode())) == (2, 4)
