"""create-user: ``POST /users`` — the seed's CreateUser Lambda on MongoDB.

Takes ``{"email": ..., "name": ...}`` and answers 201 with the new user and a ``Location: /users/{id}``
header. A body that fails validation gets 400 naming the field, by exactly the rules of its OpenAPI document
(an email with surrounding spaces is refused, not trimmed); unknown keys are refused, which is also what
keeps operator keys (``$where``, ``a.b``) out of the database; the email is stored lower-cased, and one
already registered in any case gets 409 (a unique index, created at start-up, or on the first request if
MongoDB was not there at start-up).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pymongo.errors import DuplicateKeyError, PyMongoError

from kfaas import Context
from kfaas.api import Ctx, create_api, error_response

log = logging.getLogger("create-user")

# Validation is exactly what the OpenAPI document says, so that a client can rely on it: no trimming or case
# folding before the checks (the email is lower-cased when stored), and whitespace spelled out rather than
# \s, whose meaning differs between JSON Schema's regular expressions and pydantic's.
_PART = r"[^@ \t\n\r\f\v]+"
Email = Annotated[str, StringConstraints(max_length=254, pattern=rf"^{_PART}@{_PART}\.{_PART}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class NewUser(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"email": "ada@example.com", "name": "Ada"}}
    )

    email: Email = Field(description="Unique whatever its case; stored lower-cased")
    name: Name


class User(BaseModel):
    id: str
    email: str
    name: str


class _Indexes:
    """The unique email index: made once, at start-up or on the first write if MongoDB was away then."""

    ready = False

    @classmethod
    async def ensure(cls, ctx: Context) -> None:
        if not cls.ready:
            await ctx.db.users.create_index("email", unique=True, name="email_unique")
            cls.ready = True


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    try:
        await _Indexes.ensure(api.state.kfaas)
    except PyMongoError as exc:  # MongoDB not up yet: the first POST makes the index
        log.warning("could not create the users.email index at start-up: %s", exc)
    yield


app = create_api("create-user", description="Register a user (the seed's CreateUser).", lifespan=lifespan)


@app.post(
    "/users",
    status_code=201,
    response_model=User,
    responses={
        201: {"headers": {"Location": {"description": "The new user's URL", "schema": {"type": "string"}}}},
        409: error_response("A user with this email exists"),
    },
    summary="Create a user",
)
async def create_user(body: NewUser, response: Response, ctx: Ctx) -> User:
    await _Indexes.ensure(ctx)
    email = body.email.lower()
    try:
        result = await ctx.db.users.insert_one({"email": email, "name": body.name})
    except DuplicateKeyError:
        raise HTTPException(409, f"a user with email {email!r} already exists") from None
    user_id = str(result.inserted_id)
    response.headers["Location"] = f"/users/{user_id}"
    return User(id=user_id, email=email, name=body.name)
