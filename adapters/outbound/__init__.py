"""Outbound ports over real protocols: FHIR R4 (scheduling, home health, tasks, communication
requests) and e-mail over SMTP (escalations and notifications to a role's address)."""

from adapters.outbound.email import EmailPort
from adapters.outbound.fhir import FhirPort, resource_for

__all__ = ["EmailPort", "FhirPort", "resource_for"]
