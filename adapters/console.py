"""The console port: prints what would be sent, and sends nothing. The default when no real
port is configured, so a new installation shows its actions without touching any system.

One line per action: type, role, due time, parameters, pathway, rule and the idempotency key.
Patient identifiers are left out: the line names the action, and the action id leads back to
the instance for those allowed to see it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from typing import Any, TextIO


class ConsolePort:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def line_for(self, action: Mapping[str, Any], idempotency_key: str) -> str:
        params = dict(action.get("params") or {})
        role = params.pop("role", "-")
        extra = " ".join(f"{k}={v}" for k, v in sorted(params.items()))
        return (
            f"[carepath] would send {action['action']} to {role}, due {action.get('due_by') or '-'}"
            f"{' ' + extra if extra else ''} (pathway {action['pathway']}@"
            f"{action['pathway_version']}, rule {action['rule']}, key {idempotency_key})"
        )

    def carry_out(self, action: Mapping[str, Any], idempotency_key: str) -> str | None:
        line = self.line_for(action, idempotency_key)
        with self._lock:
            stream = self.stream or sys.stdout
            stream.write(line + "\n")
            stream.flush()
        return f"console:{idempotency_key}"
