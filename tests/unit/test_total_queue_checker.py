"""The e2e total-queue checker finds each kind of delivery fault in a hand-made history."""

from caracal.events import stream_entry
from tests.e2e.total_queue import KEY, Published, Stored, Txn, check_total_queue

S = "caracal.e2e.checker"


def txn(began: float, acked: float | None, *ids: str, outcome: str = "committed") -> Txn:
    return Txn(0, began, [(S, i) for i in ids], acked, outcome)


def entries(*ids: str) -> Published:
    return {S: [stream_entry(KEY, S, i, {"k": 1}) for i in ids]}


def stored(*ids: str) -> Stored:
    """Rows in the given (txid, seq) order."""
    return {i: (S, 100 + n, n) for n, i in enumerate(ids)}


def test_clean_history_passes() -> None:
    """Every committed event once, in order, signed: no problem reported."""
    history = [txn(0, 1, "a", "b"), txn(2, 3, "c"), txn(2, None, "x", outcome="rolled_back")]
    verdict = check_total_queue(history, entries("a", "b", "c"), stored("a", "b", "c"))
    assert verdict.ok, verdict.report()
    assert (verdict.committed, verdict.published) == (3, 3)


def test_lost_duplicated_and_rolled_back_events_are_reported() -> None:
    """A missing committed event, a repeated one and one from a rolled-back transaction are all caught."""
    history = [txn(0, 1, "a", "b"), txn(2, 3, "c"), txn(2, None, "x", outcome="rolled_back")]
    verdict = check_total_queue(history, entries("a", "a", "c", "x"), stored("a", "b", "c"))
    assert verdict.lost == ["b"]
    assert verdict.duplicates == [f"{S}:a x2"]
    assert verdict.unexpected == [f"{S}:x"]


def test_entries_out_of_transaction_order_are_reported() -> None:
    """An entry whose (txid, seq) is below its predecessor's is out of order."""
    history = [txn(0, None, "a", "b", outcome="committed")]
    verdict = check_total_queue(history, entries("b", "a"), stored("a", "b"))
    assert len(verdict.out_of_order) == 1 and not verdict.lost


def test_transaction_begun_after_another_committed_must_follow_it() -> None:
    """Real-time order: if T1 was acknowledged before T2 began, T2's entries come after T1's."""
    history = [txn(0, 1, "early"), txn(2, 3, "late")]
    verdict = check_total_queue(history, entries("late", "early"), stored("late", "early"))
    assert len(verdict.real_time_violations) == 1
    concurrent = [txn(0, 3, "early"), txn(2, 4, "late")]
    assert check_total_queue(concurrent, entries("late", "early"), stored("late", "early")).ok


def test_unknown_commit_counts_exactly_when_postgres_holds_its_rows() -> None:
    """A COMMIT that failed on the wire is expected if its rows exist, forbidden otherwise."""
    applied = [txn(0, None, "u", outcome="unknown")]
    assert check_total_queue(applied, entries(), stored("u")).lost == ["u"]
    assert check_total_queue(applied, entries("u"), stored("u")).ok
    vanished = [txn(0, None, "v", outcome="unknown")]
    assert check_total_queue(vanished, entries("v"), stored()).unexpected == [f"{S}:v"]


def test_tampered_entry_fails_its_signature() -> None:
    """An entry whose fields no longer match `_sig` is reported."""
    published = entries("a")
    published[S][0]["k"] = "2"
    verdict = check_total_queue([txn(0, 1, "a")], published, stored("a"))
    assert verdict.bad_signatures == ["a"]
