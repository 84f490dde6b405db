"""get-user: ``GET /users/{id}`` — the seed's GetUser Lambda on MongoDB.

200 ``{id, email, name}``; 404 ``{"error": "User not found"}``; 400 for an id that is not a user id;
503 when MongoDB does not answer within ``MONGODB_TIMEOUT_MS`` (the function recovers by itself once it
does). It only reads, so it runs with a MongoDB user that has the ``read`` role on ``users``.
"""

from __future__ import annotations

from typing import Annotated

from bson import ObjectId
from bson.errors import InvalidId
from fastapi import HTTPException, Path
from pydantic import BaseModel

from kfaas.api import Ctx, create_api, error_response

# what ObjectId accepts, in the document (checked by the handler, which names the problem)
USER_ID = Path(
    description="The id create-user gave: 24 hex characters",
    json_schema_extra={"pattern": "^[0-9a-fA-F]{24}$"},
)


class User(BaseModel):
    id: str
    email: str
    name: str


app = create_api("get-user", description="Read a user by id (the seed's GetUser).")


@app.get(
    "/users/{user_id}",
    response_model=User,
    responses={404: error_response("No user has this id")},
    summary="Get a user",
)
async def get_user(user_id: Annotated[str, USER_ID], ctx: Ctx) -> User:
    try:
        oid = ObjectId(user_id)
    except (InvalidId, TypeError):
        raise HTTPException(400, f"malformed user id {user_id!r}: expected 24 hex characters") from None
    doc = await ctx.db.users.find_one({"_id": oid}, projection={"email": 1, "name": 1})
    if doc is None:
        raise HTTPException(404, "User not found")
    return User(id=str(doc["_id"]), email=doc["email"], name=doc["name"])
