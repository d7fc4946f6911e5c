"""bench/api.py's FastAPI + uvicorn anchor: `/api/v1/stocks/{symbol}/price` as a minimal
async app serves it, one Redis GET of MarketFlux's hot state (the same key and the same
fields), no throttle, no auth. What a lean ASGI framework costs per request here.

    uvicorn bench.anchors.fastapi_price:app --workers N   (REDIS_URL of the bench)
"""

from __future__ import annotations

import os

import orjson
import redis.asyncio as aioredis
from fastapi import FastAPI, HTTPException
from fastapi.responses import Response

from apps.market import keys  # names only: no Django here

FIELDS = ("price", "ts", "change", "change_pct", "volume")
app = FastAPI()
_redis = aioredis.Redis.from_url(os.environ["REDIS_URL"])


@app.get("/api/v1/stocks/{symbol}/price")
async def price(symbol: str) -> Response:
    ticker = symbol.upper()
    blob = await _redis.get(keys.hot(ticker))
    if blob is None:
        raise HTTPException(status_code=404, detail=f"Unknown symbol: {symbol!r}.")
    hot = orjson.loads(blob)
    body = orjson.dumps({"symbol": ticker, **{f: hot.get(f) for f in FIELDS}})
    return Response(body, media_type="application/json")
