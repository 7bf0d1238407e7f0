"""What runs around the decision core: the input loop, the virtual clock, timers."""

from typing import Final

#: Inputs between snapshots of the instance states (engine.runtime.durable). A restart re-decides
#: at most this many (the core decides thousands a second); a snapshot writes each instance
#: changed since the one before. Here, not in durable, so the CLI can show it without importing
#: the store.
SNAPSHOT_EVERY: Final = 50_000
