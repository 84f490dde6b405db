"""One of two FastAPI apps behind one gateway whose documents clash: its own ``Thing``, a shared ``Note``."""

from pydantic import BaseModel

from kfaas.api import create_api, error_response

app = create_api("things-a", description="Things, first half")


class Note(BaseModel):
    text: str


class Thing(BaseModel):
    id: str
    colour: str
    note: Note | None = None


@app.post("/things", status_code=201, summary="Make a thing")
async def make(thing: Thing) -> Thing:
    return thing


@app.get("/things/{thing_id}", responses={404: error_response("No such thing")}, summary="Read a thing")
async def read(thing_id: str) -> Thing:
    return Thing(id=thing_id, colour="red")
