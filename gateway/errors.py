"""The one error tree of the gateway, and the OpenAI error envelope it renders to.

Every failure a client can see is a ``GatewayError``. Foreign exceptions are mapped
to it in exactly two places: ``http_client.map_transport_errors()`` (httpx) and each
adapter's ``classify_error()`` (provider error bodies). Rendering happens in one
place, ``web.envelope.error_response()``.

::

    GatewayError                      status, openai_type, code, param, headers
      ClientError                     4xx: the caller's fault; never feeds a breaker
        BadRequest                    400  invalid_request_error
        AuthenticationError           401  invalid_request_error / invalid_api_key
        PermissionDenied              403
        ModelNotFound                 404  invalid_request_error / model_not_found
        PayloadTooLarge               413
        RateLimited                   429  rate_limit_exceeded (retry_after)
        BudgetExceeded                429  insufficient_quota
      UpstreamError                   the provider's fault (or the path to it)
        UpstreamTimeout               504
        UpstreamUnavailable           503  breaker open / nothing left to try
        UpstreamConnectError          502  connection refused / reset before a response
        UpstreamProtocolError         502  malformed JSON or SSE from the provider
        UpstreamStatusError           the provider answered an error status; 4xx are
                                      passed through, 5xx become 502
      ConfigError                     startup only; never raised on the request path

This module has no I/O and no state.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    status: int = 500
    openai_type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers: dict[str, str] = dict(headers or {})

    @property
    def error_type(self) -> str:
        """Short, stable name stored in the request log's ``error_type`` column."""
        return self.code or self.openai_type

    def envelope(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.openai_type,
                "param": self.param,
                "code": self.code,
            }
        }


class ClientError(GatewayError):
    status = 400
    openai_type = "invalid_request_error"


class BadRequest(ClientError):
    status = 400


class AuthenticationError(ClientError):
    status = 401
    code = "invalid_api_key"


class PermissionDenied(ClientError):
    status = 403
    openai_type = "permission_error"


class ModelNotFound(ClientError):
    status = 404
    code = "model_not_found"


class NotFound(ClientError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ClientError):
    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(ClientError):
    status = 413
    code = "request_too_large"


class RateLimited(ClientError):
    status = 429
    openai_type = "rate_limit_exceeded"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after
        if retry_after is not None:
            self.headers.setdefault("retry-after", str(max(1, round(retry_after))))


class BudgetExceeded(ClientError):
    status = 429
    openai_type = "insufficient_quota"
    code = "insufficient_quota"


class UpstreamError(GatewayError):
    status = 502
    openai_type = "upstream_error"
    #: Safe to try again (another attempt or another target) before any byte was sent.
    retryable: bool = True


class UpstreamTimeout(UpstreamError):
    status = 504
    openai_type = "timeout"
    code = "upstream_timeout"


class UpstreamUnavailable(UpstreamError):
    status = 503
    openai_type = "service_unavailable"
    code = "upstream_unavailable"


class UpstreamConnectError(UpstreamError):
    status = 502
    code = "upstream_connect_error"


class UpstreamProtocolError(UpstreamError):
    status = 502
    code = "upstream_protocol_error"
    retryable = False


class UpstreamStatusError(UpstreamError):
    """The provider answered with an error status.

    ``upstream_status`` is what the provider said; ``status`` is what our client gets:
    the provider's own 4xx (its message passed through), 502 for 5xx, and 502 for a
    provider 401/403, because those say the *gateway's* provider key is wrong, which
    the client cannot fix (a 401 would make SDKs blame the client's key).
    """

    def __init__(
        self,
        message: str,
        *,
        upstream_status: int,
        openai_type: str | None = None,
        retry_after: float | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.upstream_status = upstream_status
        self.retry_after = retry_after
        if upstream_status in (401, 403):
            self.status = 502
            self.openai_type = "upstream_auth_error"
            self.code = self.code or "upstream_auth_error"
        elif 400 <= upstream_status < 500:
            self.status = upstream_status
            self.openai_type = openai_type or (
                "rate_limit_exceeded" if upstream_status == 429 else "invalid_request_error"
            )
        else:
            self.status = 502
            self.openai_type = openai_type or "upstream_error"
        self.code = self.code or f"upstream_{upstream_status}"
        if retry_after is not None and upstream_status in (429, 503):
            self.headers.setdefault("retry-after", str(max(1, round(retry_after))))

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.upstream_status in (429, 502, 503, 504) and self.code != "insufficient_quota"

    @property
    def unhealthy(self) -> bool:
        """Whether this failure says the provider is unhealthy (feeds a breaker)."""
        return self.upstream_status >= 500 or self.upstream_status == 429


class ConfigError(GatewayError):
    """Raised while loading settings; names the TOML path at fault."""
