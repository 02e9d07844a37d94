"""Placeholder replaced by the console work (LiveConsumer)."""

from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        await self.close(code=4401)
