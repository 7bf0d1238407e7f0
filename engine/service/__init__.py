"""`carepath serve`: the engine as a background service (HTTP API, MLLP, timers, dispatch)."""
