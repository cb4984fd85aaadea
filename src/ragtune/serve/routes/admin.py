"""Keys (admin), ingestion jobs (their submitter or an admin), feedback (on one's own answers)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ragtune.serve.auth import Admin, ApiError, Caller, State, not_found
from ragtune.serve.routes.collections import public_job

router = APIRouter(prefix="/v1")


class KeyIn(BaseModel):
    user: str = Field(min_length=1)
    groups: list[str] = Field(default_factory=list)
    role: Literal["admin", "user"] = "user"


class FeedbackIn(BaseModel):
    answer_id: str
    rating: Literal["up", "down"] | None = None
    correction: str | None = Field(None, description="the answer it should have given")
    preferred_over: str | None = Field(None, description="A/B: the id of the other answer this one beat")
    comment: str | None = None


@router.get("/me", tags=["keys"])
def me(who: Caller) -> dict:
    """Who this key is (the UI shows admin-only parts to admins)."""
    return {"user": who.user, "groups": list(who.groups), "role": who.role, "key_id": who.id}


@router.get("/keys", tags=["keys"])
def list_keys(srv: State, who: Admin) -> dict:
    return {"keys": [k.to_dict() for k in srv.keys.list()]}


@router.post("/keys", status_code=201, tags=["keys"])
def create_key(body: KeyIn, srv: State, who: Admin) -> dict:
    secret, info = srv.keys.create(body.user, body.groups, body.role)
    return {"key": secret, **info.to_dict()}  # the only time the secret is shown


@router.delete("/keys/{key_id}", tags=["keys"])
def revoke_key(key_id: str, srv: State, who: Admin) -> dict:
    try:
        return srv.keys.revoke(key_id).to_dict()
    except LookupError:
        raise not_found("key") from None


@router.get("/jobs/{job_id}", tags=["jobs"])
def get_job(job_id: str, srv: State, who: Caller) -> dict:
    job = srv.jobs.get(job_id)
    if job is None or not (who.is_admin or job.owner == who.id):
        raise not_found("job")
    return public_job(job)


@router.post("/feedback", status_code=201, tags=["feedback"])
def feedback(body: FeedbackIn, srv: State, who: Caller) -> dict:
    def mine(answer_id: str) -> bool:
        a = srv.feedback.answer(answer_id)
        return a is not None and (a["user"] == who.user or who.is_admin)

    if not mine(body.answer_id) or (body.preferred_over and not mine(body.preferred_over)):
        raise not_found("answer")  # someone else's answer looks like no answer
    if body.rating is None and not (body.correction or body.preferred_over or body.comment):
        raise ApiError(400, "invalid_request", "send at least one of rating, correction, preferred_over, comment")
    fid = srv.feedback.add(body.answer_id, who.user, body.rating, body.correction, body.preferred_over, body.comment)
    return {"id": fid}
