"""A synchronous client for an ASGI app, through httpx.ASGITransport (no socket, no TestClient)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx


class AsgiClient:
    def __init__(self, app, base_url: str = "http://testserver"):
        self.app = app
        self.base_url = base_url

    def request(self, method: str, url: str, **kwargs) -> httpx.Response:
        async def go():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=self.base_url) as c:
                return await c.request(method, url, **kwargs)

        # A thread of its own: Playwright's sync API may already run an event loop in this one.
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, go()).result()

    def post(self, url: str, **kwargs) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def get(self, url: str, **kwargs) -> httpx.Response:
        return self.request("GET", url, **kwargs)
