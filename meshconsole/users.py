"""`/api/v1/users/`: people and their roles, for unscoped admins only
(`meshconsole user` is the same from the shell). Passwords are set here once
and never shown; every role change is audited (meshconsole.roles.user_role_set)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from meshconsole.api import Conflict, StrictSerializer
from meshconsole.models import Role
from meshconsole.roles import ADMIN_ONLY, grant_of, user_role_set

TAGS = ["users"]


def user_payload(user: User) -> dict[str, Any]:
    grant = grant_of(user) if user.is_active else None
    row = getattr(user, "mesh_role", None)
    return {
        "username": user.username,
        "role": grant.role if grant else (row.role if row else Role.VIEWER),
        "scope": grant.scope if grant else (row.scope if row else ""),
        "superuser": user.is_superuser,
        "active": user.is_active,
    }


class UserSerializer(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices)
    scope = serializers.CharField()
    superuser = serializers.BooleanField()
    active = serializers.BooleanField()

    def to_representation(self, instance: User) -> dict[str, Any]:
        return user_payload(instance)


class UserCreateSerializer(StrictSerializer):
    username = serializers.RegexField(r"^[\w.@+-]{1,150}$")
    password = serializers.CharField(write_only=True, max_length=200)
    role = serializers.ChoiceField(choices=Role.choices)
    scope = serializers.CharField(max_length=100, allow_blank=True, default="")

    def validate_password(self, value: str) -> str:
        try:
            validate_password(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(list(exc.messages)) from None
        return value


class UserUpdateSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=Role.choices, required=False)
    scope = serializers.CharField(max_length=100, allow_blank=True, required=False)
    active = serializers.BooleanField(required=False)


class UsersView(generics.ListAPIView):
    """GET: a page of people with their roles (MeshPagination); POST: a new one."""

    roles = ADMIN_ONLY
    serializer_class = UserSerializer
    queryset = User.objects.select_related("mesh_role").order_by("username")

    @extend_schema(tags=TAGS)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(tags=TAGS, request=UserCreateSerializer, responses={201: UserSerializer})
    def post(self, request: Request) -> Response:
        body = UserCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        with transaction.atomic():
            if User.objects.filter(username=data["username"]).exists():
                raise Conflict(f"user {data['username']!r} exists")
            user = User.objects.create_user(data["username"], password=data["password"])
            user_role_set(user=user, role=Role(data["role"]), scope=data["scope"], by=request.user)
        return Response(user_payload(user), status=status.HTTP_201_CREATED)


class UserDetailView(APIView):
    roles = ADMIN_ONLY

    @extend_schema(tags=TAGS, responses=UserSerializer)
    def get(self, request: Request, username: str) -> Response:
        return Response(user_payload(get_object_or_404(User, username=username)))

    @extend_schema(tags=TAGS, request=UserUpdateSerializer, responses=UserSerializer)
    def patch(self, request: Request, username: str) -> Response:
        user = get_object_or_404(User, username=username)
        body = UserUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        if user.is_superuser and data:
            raise serializers.ValidationError(
                {"role": ["a superuser is always an unscoped admin; change it in the admin"]}
            )
        if user.pk == request.user.pk and data:
            raise serializers.ValidationError({"role": ["you cannot change your own role"]})
        with transaction.atomic():
            if "active" in data and data["active"] != user.is_active:
                user.is_active = data["active"]
                user.save(update_fields=["is_active"])
            if "role" in data or "scope" in data:
                current = grant_of(user) if user.is_active else None
                role = Role(data.get("role", current.role if current else Role.VIEWER))
                scope = data.get("scope", current.scope if current else "")
                user_role_set(user=user, role=role, scope=scope, by=request.user)
        user = User.objects.select_related("mesh_role").get(pk=user.pk)
        return Response(user_payload(user))
