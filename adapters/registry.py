"""Which port carries out each action type, from configuration.

    adapters:
      default: console                        # every action type not listed below
      actions: {book_follow_up: fhir, escalate: email}

Port names: `console` (prints, sends nothing: the default), `fhir` (needs a `fhir:` section),
`email` (needs `smtp:` and `role_addresses`). A bad entry is reported with its key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from adapters.console import ConsolePort
from adapters.ports import ActionPort
from engine.catalogue import ACTIONS
from engine.errors import AdapterError, CarepathError

if TYPE_CHECKING:
    from engine.service.settings import Settings

#: every port name a configuration may use, and what it needs
PORT_NAMES: dict[str, str] = {
    "console": "nothing",
    "fhir": "a 'fhir:' section with base_url",
    "email": "an 'smtp:' section (and role_addresses)",
}


class PortConfigError(CarepathError):
    """The adapters configuration names something that does not exist (the key is named)."""


class PortRegistry:
    """Action type -> port. Ports are shared: one instance per configured name."""

    def __init__(self, default: ActionPort | None, routes: Mapping[str, ActionPort] | None = None):
        self.default = default
        self.routes = dict(routes or {})

    @classmethod
    def single(cls, port: ActionPort) -> PortRegistry:
        """Every action type to one port (tests, the console default)."""
        return cls(port)

    def port_for(self, action_type: str) -> ActionPort:
        port = self.routes.get(action_type, self.default)
        if port is None:
            raise AdapterError(f"no port is configured for '{action_type}' and there is no default")
        return port

    @classmethod
    def from_config(
        cls,
        default: str,
        actions: Mapping[str, str],
        available: Mapping[str, Callable[[], ActionPort]],
    ) -> PortRegistry:
        problems: list[str] = []
        wanted = {"adapters.default": default}
        for action_type, name in sorted(actions.items()):
            key = f"adapters.actions.{action_type}"
            if action_type not in ACTIONS:
                problems.append(f"{key}: '{action_type}' is not an action type")
                continue
            wanted[key] = name
        for key, name in wanted.items():
            if name not in PORT_NAMES:
                problems.append(
                    f"{key}: '{name}' is not a port (ports: {', '.join(sorted(PORT_NAMES))})"
                )
            elif name not in available:
                problems.append(f"{key}: the '{name}' port needs {PORT_NAMES[name]}")
        if problems:
            raise PortConfigError("invalid adapters configuration: " + "; ".join(problems))
        built: dict[str, ActionPort] = {}

        def port(name: str) -> ActionPort:
            if name not in built:
                built[name] = available[name]()
            return built[name]

        return cls(port(default), {t: port(n) for t, n in actions.items()})


def ports_from_settings(settings: Settings) -> PortRegistry:
    """The ports the service (or a Prefect worker) is configured with."""
    available: dict[str, Callable[[], ActionPort]] = {"console": ConsolePort}
    fhir, smtp = settings.fhir, settings.smtp
    if fhir is not None:

        def make_fhir() -> ActionPort:
            from adapters.outbound.fhir import FhirPort

            return FhirPort(fhir.base_url, timeout_seconds=fhir.timeout_seconds)

        available["fhir"] = make_fhir
    if smtp is not None:

        def make_email() -> ActionPort:
            from adapters.outbound.email import EmailPort

            return EmailPort(smtp.host, smtp.port, smtp.sender, settings.role_addresses)

        available["email"] = make_email
    return PortRegistry.from_config(settings.adapters.default, settings.adapters.actions, available)
