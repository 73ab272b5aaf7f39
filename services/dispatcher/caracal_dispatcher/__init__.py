"""The outbox dispatcher: publishes event_outbox rows to Redis streams in commit order, exactly once."""
