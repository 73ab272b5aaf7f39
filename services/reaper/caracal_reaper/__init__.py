"""The reaper: periodic clean-up jobs (outbox retention, audit sealing, DCR GC, session expiry)."""
