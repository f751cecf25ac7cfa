"""The error answer every HighLevel route raises: status and JSON body."""

from __future__ import annotations

from typing import Any

__all__ = ["ApiError"]


class ApiError(Exception):
    """An error answer: HTTP status and JSON body (traceId added when sent)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message"))
        self.status = status
        self.body = body

    @classmethod
    def bad_request(cls, message: str) -> ApiError:
        return cls(400, {"statusCode": 400, "message": message})

    @classmethod
    def unprocessable(cls, messages: list[str]) -> ApiError:
        return cls(422, {"statusCode": 422, "message": messages, "error": "Unprocessable Entity"})

    @classmethod
    def forbidden_location(cls) -> ApiError:
        return cls(
            403,
            {
                "statusCode": 403,
                "message": "The token does not have access to this location.",
                "error": "Forbidden",
            },
        )

    @classmethod
    def unauthorized(cls, message: str) -> ApiError:
        return cls(401, {"statusCode": 401, "message": message, "error": "Unauthorized"})
