"""The HTTP API (FastAPI; OpenAPI docs at /docs).

Every endpoint but /healthz needs `Authorization: Bearer <token>`; the token's role decides what
it may do: ingest (post events), clinician (read), author (load pathways), auditor (read-only,
audit and replay). Missing or unknown token: 401; wrong role: 403.

Bad input is answered 400 (not well-formed: not UTF-8, not JSON, nested too deeply) or 422 (not
acceptable), HL7 with a NAK, and the payload is kept as a dead letter, as received, with the
reason. An event id accepted before with a different body is a conflict: 409 for a lone event,
listed under `conflicts` in a batch's 202 (the others are recorded), each kept as a dead letter.
A body over `max_request_bytes` is refused 413 unread. When the writer has `max_inflight_events`
waiting, or the service is stopping, the answer is 503 with Retry-After (HL7: `AR`): nothing was
recorded, send again.

The access log names the route template (`/patients/{patient_id}/pathways`), never the values in
a path; logs carry counts, types and instance ids, never names, identifiers or payloads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.service.intake import Intake, Taken
from engine.service.settings import Role

log = logging.getLogger("carepath.api")
access = logging.getLogger("carepath.access")


class TooLarge(Exception):
    def __init__(self, size: int | None, limit: int) -> None:
        self.size, self.limit = size, limit


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (TooLarge) unread once it is over `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(None, limit)
        chunks.append(chunk)
    return b"".join(chunks)


class AccessLog:
    """One line per request: method, route template, status, milliseconds. uvicorn's own access
    log writes the path as requested (a patient id in `/patients/<id>/pathways`, even on 401)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "(no route)"
            access.info(
                "%s %s %d %.1f ms", scope["method"], template, status,
                (time.perf_counter() - start) * 1000,
            )


Endpoint = Callable[[Request], Awaitable[Response]]


class FastLane:
    """The ingest routes (`POST /events`, `/fhir`, `/hl7v2`: the per-event hot path) straight
    to their endpoints, past FastAPI's exception, exit-stack and dependency machinery, which cost
    about a third of the event loop's time per one-event POST (docs/benchmarks.md). The same
    endpoints are declared to FastAPI for the OpenAPI document; they check the token themselves.
    Everything else goes to FastAPI."""

    def __init__(
        self,
        app: ASGIApp,
        routes: Mapping[str, tuple[Endpoint, Any]],
        overloaded: Callable[[], bool],
        retry_after: int,
    ) -> None:
        self.app = app
        self.routes = routes
        self.overloaded = overloaded
        self.busy = PlainTextResponse(
            "the service is overloaded: send again later",
            status_code=503,
            headers={"Retry-After": str(retry_after)},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        endpoint, scope["route"] = route  # what the access log names
        if self.overloaded():
            # The event loop is behind: a request turned away must cost next to nothing, or
            # turning them away is all the service does (an open-loop flood at twice the
            # capacity left 500 events/s accepted of 2,000 when refusals went through the
            # endpoint; 1,400 answered here, unread and unparsed: docs/benchmarks.md).
            await self.busy(scope, receive, send)
            return
        try:
            response = await endpoint(Request(scope, receive))
        except HTTPException as exc:  # the token check
            response = JSONResponse(
                {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
            )
        await response(scope, receive, send)


def create_app(service: Any) -> FastAPI:
    """`service` is an engine.service.server.Service."""
    app = FastAPI(
        title="Carepath",
        version="0.1.0",
        description="Rules-driven care pathways: events in, actions out.",
    )
    settings = service.settings
    intake: Intake = service.intake
    retry_after = {"Retry-After": str(settings.retry_after_seconds)}

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

    async def body_of(request: Request, source: str) -> bytes | JSONResponse:
        try:
            return await read_body(request, settings.max_request_bytes)
        except TooLarge as exc:
            size = f"{exc.size} bytes" if exc.size is not None else "more than that"
            reason = (
                f"the request is {size}; the limit is {exc.limit} bytes (max_request_bytes): "
                "split it"
            )
            letter = await intake.keep(source, reason, b"")
            service.metrics.rejected.labels(source).inc()
            return JSONResponse({"detail": reason, "dead_letter": letter}, status_code=413)

    def answer(taken: Taken, *, lone: bool) -> JSONResponse:
        """The JSON answer of /events and /fhir."""
        if taken.outcome == "refused":
            return JSONResponse(
                {"detail": taken.reason, "dead_letter": taken.dead_letter},
                status_code=400 if taken.malformed else 422,
            )
        if taken.outcome in ("busy", "failed"):
            return JSONResponse({"detail": taken.reason}, status_code=503, headers=retry_after)
        receipt = taken.receipt
        if lone and receipt.conflicts:
            return JSONResponse(
                {
                    "detail": f"event id {receipt.conflicts[0]!r} was accepted before with a "
                    "different body: not recorded",
                    "conflicts": receipt.conflicts,
                    "dead_letter": taken.dead_letter,
                },
                status_code=409,
            )
        body: dict[str, Any] = {"accepted": receipt.accepted, "duplicates": receipt.duplicates}
        if receipt.conflicts:
            body["conflicts"] = receipt.conflicts
            body["dead_letter"] = taken.dead_letter
        return JSONResponse(body, status_code=202)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "pathways": sorted(service.registry.by_key)}

    check_ingest = role(Role.INGEST)

    @app.post("/events", status_code=202, dependencies=ingest)
    async def post_events(request: Request) -> Response:
        from adapters.inbound import events_from_document, parse_json

        await check_ingest(request)
        raw = await body_of(request, "json")
        if isinstance(raw, JSONResponse):
            return raw
        shape: dict[str, bool] = {}

        def decode(payload: bytes) -> Any:
            document = parse_json(payload)
            shape["lone"] = isinstance(document, dict)  # one event, not a list of them
            return document

        taken = await intake.take("json", raw, decode, events_from_document)
        return answer(taken, lone=shape.get("lone", False))

    @app.post("/hl7v2", dependencies=ingest)
    async def post_hl7(request: Request) -> Response:
        await check_ingest(request)
        raw = await body_of(request, "hl7v2")
        if isinstance(raw, JSONResponse):
            return raw
        code, text, status = await service.take_hl7("hl7v2", raw)
        return PlainTextResponse(text, status_code=status, headers=retry_after
                                 if code == "AR" else None)

    @app.post("/fhir", status_code=202, dependencies=ingest)
    async def post_fhir(request: Request) -> Response:
        from adapters.inbound import events_from_fhir, parse_json

        await check_ingest(request)
        raw = await body_of(request, "fhir")
        if isinstance(raw, JSONResponse):
            return raw
        taken = await intake.take(
            "fhir", raw, parse_json,
            lambda document: events_from_fhir(document, default_tz=settings.zone),
        )
        return answer(taken, lone=len(taken.events) <= 1)

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
            raise HTTPException(404, "no such instance")
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
        raw = await body_of(request, "pathway")
        if isinstance(raw, JSONResponse):
            return raw
        problems = service.add_pathway(raw)
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

    declared = {r.path: r for r in app.routes if isinstance(r, APIRoute)}
    fast = {path: (endpoint, declared[path]) for path, endpoint in
            (("/events", post_events), ("/fhir", post_fhir), ("/hl7v2", post_hl7))}
    app.add_middleware(
        FastLane,
        routes=fast,
        overloaded=intake.overloaded,
        retry_after=settings.retry_after_seconds,
    )
    app.add_middleware(AccessLog)  # outermost: it times and names every request
    return app
