"""The outside world: inbound event adapters and outbound action ports."""
