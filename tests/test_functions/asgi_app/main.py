"""A FastAPI app served as an ``asgi`` target, with a lifespan that sees the kfaas Context."""

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from kfaas.api import Ctx, create_api

STARTED = []


@asynccontextmanager
async def lifespan(api: FastAPI):
    STARTED.append(api.state.kfaas.settings.function_name)
    yield
    STARTED.append("stopped")


app = create_api("sample", lifespan=lifespan)


@app.get("/things/{n}")
async def thing(n: int, ctx: Ctx) -> dict:
    return {"n": n, "function": ctx.settings.function_name}


@app.get("/boom")
async def boom() -> dict:
    raise RuntimeError("secret internal detail")


@app.post("/echo")
async def echo(request: Request) -> dict:
    return {"bytes": len(await request.body())}


@app.get("/misconfigured")
async def misconfigured(ctx: Ctx) -> dict:
    return {"users": await ctx.db.users.count_documents({})}  # no MONGODB_URL: kfaas.ConfigurationError
