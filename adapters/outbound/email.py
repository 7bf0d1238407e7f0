"""The e-mail port: escalations and notifications sent over SMTP to the address configured for
the action's role. The message names the internal patient id only, never a name, and tells the
recipient how to acknowledge (the task id). Its Message-ID is derived from the action id, so a
re-sent message is recognisable as the same one by any mail system that dedupes on it.
"""

from __future__ import annotations

import smtplib
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

from engine.errors import AdapterError


class EmailPort:
    def __init__(self, host: str, port: int, sender: str,
                 role_addresses: Mapping[str, str], timeout_seconds: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.role_addresses = dict(role_addresses)
        self.timeout = timeout_seconds

    def message_for(self, action: Mapping[str, Any], idempotency_key: str) -> EmailMessage:
        params = action.get("params") or {}
        role = str(params.get("role", ""))
        address = self.role_addresses.get(role)
        if not address:
            raise AdapterError(f"no e-mail address configured for role '{role}'")
        urgent = bool(params.get("urgent"))
        level = f" level {params['level']}" if "level" in params else ""
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = address
        message["Subject"] = (f"{'URGENT ' if urgent else ''}[carepath] {action['action']}{level}: "
                              f"{params.get('reason', '')} (patient {action['patient_id']})")
        domain = self.sender.rpartition("@")[2] or "carepath"
        message["Message-ID"] = f"<{idempotency_key}@{domain}>"
        message["X-Carepath-Action"] = idempotency_key
        if urgent:
            message["Importance"] = "high"
        lines = [
            f"Action:   {action['action']}{level}",
            f"Reason:   {params.get('reason', '')}",
            f"Role:     {role}",
            f"Patient:  {action['patient_id']} (internal id)",
            f"Pathway:  {action['pathway']}@{action['pathway_version']}",
            f"Rule:     {action['rule']}",
            f"Fired at: {action['fired_at']}",
            f"Due by:   {action.get('due_by') or '-'}",
            "",
            f"Acknowledge with task id {action['id']} (event task.acknowledged).",
        ]
        message.set_content("\n".join(lines) + "\n")
        return message

    def carry_out(self, action: Mapping[str, Any], idempotency_key: str) -> str | None:
        message = self.message_for(action, idempotency_key)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise AdapterError(f"e-mail for {idempotency_key}: {reason}") from exc
        return str(message["Message-ID"])
