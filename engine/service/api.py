"""The HTTP API (FastAPI; OpenAPI docs at /docs).

Every endpoint but /healthz needs `Authorization: Bearer <token>`; the token's role decides what
it may do: ingest (post events), clinician (read), author (load pathways), auditor (read-only,
audit and replay). Missing or unknown token: 401; wrong role: 403.

Bad input is answered 400/422 (HL7: a NAK) with a precise message, and the raw payload is kept
as a dead letter with the reason. Logs carry event ids, types and instance ids, never names or
payloads.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from engine.catalogue import Event
from engine.errors import InputError
from engine.service.settings import Role

log = logging.getLogger("carepath.api")


def create_app(service: Any) -> FastAPI:
    """`service` is an engine.service.server.Service."""
    app = FastAPI(
        title="Carepath",
        version="0.1.0",
        description="Rules-driven care pathways: events in, actions out.",
    )
    settings = service.settings

    def role(*allowed: Role) -> Callable[[Request], Awaitable[Role]]:
        async def check(request: Request) -> Role:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if settings.insecure_dev and not settings.tokens:
                return allowed[0] if allowed else Role.AUDITOR
            if scheme.lower() != "bearer" or not token:
                raise HTTPException(
                    401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"}
                )
            found: Role | None = settings.role_of(token.strip())
            if found is None:
                raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
            if allowed and found not in allowed:
                raise HTTPException(403, f"the {found} role may not do this")
            return found

        return check

    ingest = [Depends(role(Role.INGEST))]
    reader = [Depends(role(Role.CLINICIAN, Role.AUDITOR))]
    author = [Depends(role(Role.AUTHOR))]
    auditor = [Depends(role(Role.AUDITOR))]
    any_role = [Depends(role())]

    async def accept(source: str, events: list[Event]) -> dict[str, Any]:
        future = service.ingestor.submit(events)
        try:
            receipt = await asyncio.wrap_future(future)
        except Exception as exc:
            log.error(
                "ingest failed for %d %s event(s): %s", len(events), source, type(exc).__name__
            )
            raise HTTPException(503, "could not record the events; send them again") from None
        service.metrics.accepted.labels(source).inc(len(receipt.accepted))
        service.metrics.duplicates.labels(source).inc(len(receipt.duplicates))
        for event in events:
            log.info("event %s type=%s accepted via %s", event.id, event.type, source)
        return {"accepted": receipt.accepted, "duplicates": receipt.duplicates}

    def refuse(source: str, reason: str, payload: str, status: int) -> JSONResponse:
        letter = service.store.dead_letter(source, reason, payload, datetime.now(UTC))
        service.metrics.rejected.labels(source).inc()
        log.warning("refused %s payload, dead letter %d", source, letter)
        return JSONResponse({"detail": reason, "dead_letter": letter}, status_code=status)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "pathways": sorted(service.registry.by_key)}

    @app.post("/events", status_code=202, dependencies=ingest)
    async def post_events(request: Request) -> Response:
        from adapters.inbound import events_from_json

        body = (await request.body()).decode("utf-8", errors="replace")
        try:
            json.loads(body)
        except json.JSONDecodeError as exc:
            return refuse("json", f"not valid JSON: {exc.msg} (line {exc.lineno})", body, 400)
        try:
            events = events_from_json(body)
        except InputError as exc:
            return refuse("json", str(exc), body, 422)
        return JSONResponse(await accept("json", events), status_code=202)

    @app.post("/hl7v2", dependencies=ingest)
    async def post_hl7(request: Request) -> Response:
        from adapters.inbound import ack, events_from_hl7

        raw = await request.body()
        text = raw.decode("utf-8", errors="replace")
        try:
            events = events_from_hl7(raw, default_tz=settings.zone)
        except InputError as exc:
            refuse("hl7v2", str(exc), text, 400)
            return PlainTextResponse(ack(text, "AE", str(exc)), status_code=400)
        try:
            await accept("hl7v2", events)
        except HTTPException:
            return PlainTextResponse(ack(text, "AR", "could not record; resend"), status_code=503)
        return PlainTextResponse(ack(text, "AA", ""), status_code=200)

    @app.post("/fhir", status_code=202, dependencies=ingest)
    async def post_fhir(request: Request) -> Response:
        from adapters.inbound import events_from_fhir

        body = (await request.body()).decode("utf-8", errors="replace")
        try:
            resource = json.loads(body)
        except json.JSONDecodeError as exc:
            return refuse("fhir", f"not valid JSON: {exc.msg} (line {exc.lineno})", body, 400)
        try:
            events = events_from_fhir(resource, default_tz=settings.zone)
        except InputError as exc:
            return refuse("fhir", str(exc), body, 422)
        return JSONResponse(await accept("fhir", events), status_code=202)

    @app.get("/patients/{patient_id}/pathways", dependencies=reader)
    async def patient_pathways(patient_id: str) -> list[dict[str, Any]]:
        return [
            {
                "instance_id": s.instance_id,
                "pathway": s.pathway_key,
                "active": s.active,
                "enrolled_at": s.enrolled_at.isoformat(),
                "exit_reason": s.exit_reason,
            }
            for s in map(service.engine.current, service.store.instances_of(patient_id))
        ]

    @app.get("/instances/{instance_id}", dependencies=reader)
    async def instance(instance_id: str) -> dict[str, Any]:
        stored = service.store.instance(instance_id)
        if stored is None:
            raise HTTPException(404, f"no instance {instance_id}")
        state = service.engine.current(stored)
        return {
            "state": state.as_dict(),
            "pending_timers": [
                {"timer": k, "due_at": v.isoformat()}
                for k, v in sorted(state.timers.items(), key=lambda kv: kv[1])
            ],
            "actions": service.store.instance_actions(instance_id),
            "timeline": service.store.instance_audit(instance_id),
        }

    @app.post("/pathways", status_code=201, dependencies=author)
    async def load_pathway(request: Request) -> Response:
        body = (await request.body()).decode("utf-8", errors="replace")
        problems = service.add_pathway(body)
        if problems:
            return JSONResponse({"problems": problems}, status_code=422)
        return JSONResponse({"pathways": sorted(service.registry.by_key)}, status_code=201)

    @app.get("/audit/verify", dependencies=auditor)
    async def audit_verify() -> dict[str, Any]:
        from engine.store.verify import verify

        reports = await asyncio.to_thread(verify, service.store)
        return {
            "intact": not any(r.problem for r in reports),
            "chains": [r.as_dict() for r in reports],
        }

    @app.get("/metrics", dependencies=any_role)
    async def metrics() -> Response:
        service.refresh_gauges()
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
