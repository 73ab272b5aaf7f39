"""Every Postgres advisory-lock key the control plane takes, in one place so that no two collide.

Fixed keys are bigints in the original's range (its jobs use 71639204853184xx), listed with the
original's own keys so that an original API against the same database never runs the same job at
the same time as ours. Keys for one of many things (a stream, a base slug) are derived by Postgres
from a prefixed name; the prefixes keep those families apart from each other.
"""

from __future__ import annotations

MIGRATION_LOCK_KEY = 7163920485318400  # session lock: one process migrates, the others wait
BOOTSTRAP_LOCK_KEY = 7163920485318410  # transaction lock: admin-token bootstraps take turns
DCR_GC_LOCK_KEY = 7163920485318472  # the original's DCR client collector (CONTRACT.md §6)
SESSION_REAPER_LOCK_KEY = 7163920485318481  # the original's sessions reaper (CONTRACT.md §6)
OUTBOX_PRUNE_LOCK_KEY = 7163920485318490  # reaper: outbox retention
AUDIT_SEAL_LOCK_KEY = 7163920485318495  # reaper: the one admin audit chain sealer
IDEMPOTENCY_EXPIRY_LOCK_KEY = 7163920485318496  # reaper: Idempotency-Key rows past 24 h

FIXED_KEYS = {
    "MIGRATION_LOCK_KEY": MIGRATION_LOCK_KEY,
    "BOOTSTRAP_LOCK_KEY": BOOTSTRAP_LOCK_KEY,
    "DCR_GC_LOCK_KEY": DCR_GC_LOCK_KEY,
    "SESSION_REAPER_LOCK_KEY": SESSION_REAPER_LOCK_KEY,
    "OUTBOX_PRUNE_LOCK_KEY": OUTBOX_PRUNE_LOCK_KEY,
    "AUDIT_SEAL_LOCK_KEY": AUDIT_SEAL_LOCK_KEY,
    "IDEMPOTENCY_EXPIRY_LOCK_KEY": IDEMPOTENCY_EXPIRY_LOCK_KEY,
}

# Derived keys: `hashtextextended(prefix || name, 0)` (64-bit) or `hashtext(prefix || name)`
# (32-bit, so never equal to a fixed key above, which all exceed 2^32).
STREAM_LEASE_PREFIX = "caracal.outbox:"  # dispatcher: one publisher per stream (session lock)
ZONE_SLUG_PREFIX = "zones.slug:"  # zone creation: creators of one base slug take turns
PROVIDER_IDENTIFIER_PREFIX = "providers.identifier:"  # provider creation, per zone and base identifier
POLICY_ACTIVATION_PREFIX = "policy_sets.activation:"  # a zone's activations and active-set deletes
POLICY_VERSION_PREFIX = "policies.version:"  # one policy's version writers take turns (max+1)

DERIVED_PREFIXES = {
    "STREAM_LEASE_PREFIX": STREAM_LEASE_PREFIX,
    "ZONE_SLUG_PREFIX": ZONE_SLUG_PREFIX,
    "PROVIDER_IDENTIFIER_PREFIX": PROVIDER_IDENTIFIER_PREFIX,
    "POLICY_ACTIVATION_PREFIX": POLICY_ACTIVATION_PREFIX,
    "POLICY_VERSION_PREFIX": POLICY_VERSION_PREFIX,
}
