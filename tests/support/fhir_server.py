"""A small, real FHIR R4 HTTP server for tests. It validates every resource it receives with
fhir.resources (R4B), honours conditional create (`If-None-Exist: identifier=system|value`),
and records what it was sent. It can be told to fail the next N requests (HTTP 503)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError


@dataclass
class Received:
    resource_type: str
    resource: dict[str, Any]
    headers: dict[str, str]
    created: bool


@dataclass
class FhirServer:
    host: str = "127.0.0.1"
    port: int = 0
    received: list[Received] = field(default_factory=list)
    store: dict[str, dict[str, Any]] = field(default_factory=dict)  # "Type/id" -> resource
    by_identifier: dict[tuple[str, str], str] = field(default_factory=dict)
    fail_next: int = 0
    invalid: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                server._post(self)

        self._httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/fhir"

    def start(self) -> FhirServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def created(self, resource_type: str | None = None) -> list[Received]:
        return [r for r in self.received if r.created
                and (resource_type is None or r.resource_type == resource_type)]

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        resource_type = handler.path.rstrip("/").split("/")[-1]
        body = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                self._reply(handler, 503, {"resourceType": "OperationOutcome"})
                return
            try:
                resource = json.loads(body)
                model = get_fhir_model_class(resource_type)
                model.model_validate(resource)
                if resource.get("resourceType") != resource_type:
                    raise ValueError("resourceType does not match the URL")
            except (ValueError, ValidationError, KeyError) as exc:
                self.invalid.append(f"{resource_type}: {exc}")
                self._reply(handler, 400, {"resourceType": "OperationOutcome"})
                return
            condition = headers.get("if-none-exist", "")
            key = None
            if condition.startswith("identifier="):
                system, _, value = condition.removeprefix("identifier=").partition("|")
                key = (f"{resource_type}:{system}", value)
                if key in self.by_identifier:
                    existing = self.by_identifier[key]
                    self.received.append(Received(resource_type, resource, headers, False))
                    self._reply(handler, 200, self.store[existing], location=existing)
                    return
            ident = f"{resource_type}/{len(self.store) + 1}"
            resource["id"] = ident.split("/")[1]
            self.store[ident] = resource
            if key is not None:
                self.by_identifier[key] = ident
            self.received.append(Received(resource_type, resource, headers, True))
            self._reply(handler, 201, resource, location=ident)

    def _reply(self, handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any],
               location: str | None = None) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/fhir+json")
        handler.send_header("Content-Length", str(len(data)))
        if location:
            handler.send_header("Location", f"{self.base_url}/{location}/_history/1")
        handler.end_headers()
        handler.wfile.write(data)
