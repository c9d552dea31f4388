"""Access rules of our UI pages. Plugin apps are served without authentication, so each route
takes the user from Airflow's own JWT (GetUserDep: bearer header or the UI's `_token` cookie) and
asks the auth manager about the pipeline's DAG: read (GET) to see, edit (PUT) to act. The JWT
travels as a cookie, so every form that changes something also carries a CSRF token: the user's
name signed with the API server's secret key (itsdangerous), valid for a few hours."""

from __future__ import annotations

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
from airflow.configuration import conf
from fastapi import HTTPException
from itsdangerous import BadSignature, URLSafeTimedSerializer

CSRF_FIELD = "csrf_token"
CSRF_MAX_AGE_S = 8 * 3600


def may(user, method: str, pipeline: str) -> bool:
    return get_auth_manager().is_authorized_dag(method=method, details=DagDetails(id=pipeline), user=user)


def require(user, method: str, pipeline: str) -> None:
    if not may(user, method, pipeline):
        raise HTTPException(403, f"not allowed to {'change' if method != 'GET' else 'read'} pipeline {pipeline!r}")


def _signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(conf.get("api", "secret_key"), salt="pipeline-pages-csrf")


def csrf_token(user) -> str:
    return _signer().dumps(user.get_name())


def check_csrf(user, token: str | None) -> None:
    """403 unless `token` was issued to this user by csrf_token (and is not too old)."""
    try:
        if token and _signer().loads(token, max_age=CSRF_MAX_AGE_S) == user.get_name():
            return
    except BadSignature:
        pass
    raise HTTPException(403, "missing or invalid CSRF token: reload the page and try again")
