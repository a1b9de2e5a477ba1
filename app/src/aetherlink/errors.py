"""Client-facing errors: every 4xx/5xx body is {"error": {"code": ..., "message": ...}}."""

from __future__ import annotations

from starlette.responses import JSONResponse


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def invalid(field: str, message: str, code: str = "invalid_value") -> ApiError:
    return ApiError(422, code, f"field '{field}': {message}")
