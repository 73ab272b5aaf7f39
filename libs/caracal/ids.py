"""Identifiers: UUIDv7, lowercase and hyphenated, as the contract requires."""

from __future__ import annotations

import re

import uuid_utils

PATH_PARAM = re.compile(r"^[A-Za-z0-9_.\-:]{1,128}$")


def new_id() -> str:
    return str(uuid_utils.uuid7())


def new_request_id() -> str:
    """A random UUIDv4 (the contract's X-Request-Id), from uuid_utils: 0.2 µs against the stdlib's 3
    (its os.urandom call per id); fresh in every forked worker."""
    return str(uuid_utils.uuid4())


def is_valid_param(value: str) -> bool:
    return PATH_PARAM.match(value) is not None
