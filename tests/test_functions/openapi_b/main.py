"""The other FastAPI app: another ``Thing`` (clashing), the same ``Note``, and a route the gateway does not route."""

from pydantic import BaseModel

from kfaas.api import create_api

app = create_api("things-b", description="Things, second half")


class Note(BaseModel):
    text: str


class Thing(BaseModel):
    id: str
    weight: float
    note: Note | None = None


@app.delete("/things/{id}", summary="Remove a thing")
async def remove(id: str) -> Thing:  # a name other than openapi_a's on the same path
    return Thing(id=id, weight=1.0)


@app.get("/internal", summary="Not routed by the gateway")
async def internal() -> dict:
    return {}
