"""The e-mail port against a real SMTP server (aiosmtpd)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.outbound import EmailPort
from engine.errors import AdapterError
from tests.support.smtp_server import SmtpServer


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


ESCALATION = {
    "id": "i-00000000000000aa.7",
    "action": "escalate",
    "patient_id": "pt-3",
    "pathway": "chf-post-discharge",
    "pathway_version": "1",
    "instance_id": "i-00000000000000aa",
    "rule": "red_flag_symptom",
    "fired_at": "2026-03-10T22:15:00Z",
    "due_by": "2026-03-10T23:15:00Z",
    "params": {"role": "cardiology_on_call", "reason": "red_flag_symptom", "level": 1,
               "chain": "red_flag", "urgent": True},
}


def test_escalation_mail_goes_to_the_roles_address(smtp: SmtpServer) -> None:
    port = EmailPort("127.0.0.1", smtp.port, "carepath@example.org",
                     {"cardiology_on_call": "cardio-oncall@example.org"})
    reference = port.carry_out(ESCALATION, ESCALATION["id"])
    (message,) = smtp.messages
    assert message["To"] == "cardio-oncall@example.org"
    assert message["Subject"].startswith("URGENT [carepath] escalate level 1: red_flag_symptom")
    assert message["Message-ID"] == reference == "<i-00000000000000aa.7@example.org>"
    body = message.get_payload()
    assert "Acknowledge with task id i-00000000000000aa.7" in body
    assert "pt-3 (internal id)" in body


def test_a_role_without_an_address_is_refused(smtp: SmtpServer) -> None:
    port = EmailPort("127.0.0.1", smtp.port, "carepath@example.org", {})
    with pytest.raises(AdapterError, match="no e-mail address configured for role"):
        port.carry_out(ESCALATION, ESCALATION["id"])
    assert smtp.messages == []
