"""Real servers at the network boundary, for tests: a FHIR server and an SMTP server."""
