"""What can go wrong talking to a ferry hub, as exception classes.

Every error the hub's REST API answers is a :class:`FerryAPIError` carrying
the HTTP status, the hub's stable machine word (the JSON ``error`` field,
e.g. ``not_found``, ``endpoint_offline``) and its one-line message. The
common statuses have subclasses, so callers can ``except NotFoundError``.
Errors of the OAuth token endpoint are :class:`OAuthError` (``code`` is the
RFC 6749 ``error``). When no answer arrives at all (refused connection, TLS
verification failure, timeout) the error is a :class:`TransportError`.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple, Type

import requests

__all__ = [
    "FerryError",
    "TransportError",
    "FerryAPIError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "OperationFailedError",
    "RateLimitedError",
    "UnavailableError",
    "OAuthError",
    "LoginError",
    "TaskWaitTimeout",
]


class FerryError(Exception):
    """Base class of every error this SDK raises."""


class TransportError(FerryError):
    """The hub could not be reached or trusted, or did not answer in time.

    ``cause`` is the underlying ``requests`` exception.
    """

    def __init__(self, message: str, cause: Optional[BaseException] = None) -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause


class FerryAPIError(FerryError):
    """The hub answered with an error.

    Attributes:
        status: the HTTP status code.
        code: the hub's stable machine word (``not_found``, ``forbidden``, ...).
        message: one line saying what went wrong and what to do.
        response: the ``requests.Response`` (for headers such as ``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        response: Optional[requests.Response] = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.response = response


class BadRequestError(FerryAPIError):
    """400: the request is not valid (a bad path, option or name)."""


class AuthenticationError(FerryAPIError):
    """401: no valid token (missing, expired, revoked)."""


class PermissionDeniedError(FerryAPIError):
    """403: the token is valid but may not do this."""


class NotFoundError(FerryAPIError):
    """404: no such endpoint or task among the caller's."""


class ConflictError(FerryAPIError):
    """409: the object's state forbids it (task ended, name taken, ...)."""


class OperationFailedError(FerryAPIError):
    """422: the endpoint tried a file operation and it failed."""


class RateLimitedError(FerryAPIError):
    """429: too many requests; try again later."""


class UnavailableError(FerryAPIError):
    """503/504: the hub or an endpoint cannot serve this now (e.g. offline)."""


class OAuthError(FerryAPIError):
    """The token endpoint refused (RFC 6749 §5.2): ``code`` is its ``error``
    (``invalid_grant``, ``invalid_client``, ...)."""


class LoginError(FerryError):
    """A login flow could not finish (denied, state mismatch, timed out)."""


class TaskWaitTimeout(FerryError):
    """:meth:`FerryClient.wait_task` gave up; ``task`` is its last state."""

    def __init__(self, message: str, task: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.task = task


_BY_STATUS: Dict[int, Type[FerryAPIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: OperationFailedError,
    429: RateLimitedError,
    503: UnavailableError,
    504: UnavailableError,
}

# Longest error text kept from an answer that is not the hub's JSON (a
# proxy's HTML page, say): enough to recognise it, not a whole page.
_MAX_TEXT = 200


def api_error(response: requests.Response) -> FerryAPIError:
    """The exception for an error answer of the REST API."""
    code, message = _error_fields(response, "error", "message")
    cls = _BY_STATUS.get(response.status_code, FerryAPIError)
    return cls(response.status_code, code, message, response)


def oauth_error(response: requests.Response) -> OAuthError:
    """The exception for an error answer of ``/token``."""
    code, message = _error_fields(response, "error", "error_description")
    return OAuthError(response.status_code, code, message, response)


def _error_fields(
    response: requests.Response, code_key: str, message_key: str
) -> Tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get(code_key), str):
        message = body.get(message_key)
        return body[code_key], message if isinstance(message, str) else ""
    text = " ".join(response.text[:_MAX_TEXT].split())
    return "http_error", text or (response.reason or "no message")
