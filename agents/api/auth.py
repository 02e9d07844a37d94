"""`Authorization: Agent <token>` — how an enrolled agent proves who it is."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from agents.enrollment import agent_for_token
from agents.models import Agent


class AgentTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Agent"

    def authenticate(self, request: Request) -> tuple[Any, Agent] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid agent token header.")
        try:
            raw = header[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid agent token.") from None
        agent = agent_for_token(raw)
        if agent is None:
            raise exceptions.AuthenticationFailed("Invalid agent token.")
        return AnonymousUser(), agent

    def authenticate_header(self, request: Request) -> str:
        return self.keyword
