"""The reaper: periodic clean-up jobs (outbox retention now; sessions and DCR clients as they land)."""
