"""Domain rules, one module per aggregate; each mutation changes state and records its event."""
