"""X-Request-Id when the caller sends none: a random UUIDv4, distinct in every forked worker."""

from __future__ import annotations

import os
import uuid

from caracal.ids import new_request_id
from caracal_api.middleware import request_id_from


def test_a_request_without_an_id_gets_a_fresh_uuid4() -> None:
    ids = {request_id_from({"headers": []}) for _ in range(1000)}
    assert len(ids) == 1000
    for value in ids:
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and str(parsed) == value


def test_a_valid_caller_id_is_kept() -> None:
    assert request_id_from({"headers": [(b"x-request-id", b"abc-123")]}) == "abc-123"


def test_forked_workers_draw_different_ids() -> None:
    new_request_id()  # the parent's generator is in use before the fork, as in the supervisor
    drawn = []
    for _ in range(2):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.write(write, new_request_id().encode())
            os._exit(0)
        os.close(write)
        drawn.append(os.read(read, 64).decode())
        os.close(read)
        os.waitpid(pid, 0)
    drawn.append(new_request_id())
    assert len(set(drawn)) == 3
