"""Settings read from the environment (and `.env`), with one-line messages for what is wrong."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import phonenumbers
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import (
    ModelWrapValidatorHandler,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from bot.compose.quiet_hours import QuietHours, zone_named
from bot.compose.signature import Signature
from bot.settings._fields import SettingsFields
from bot.settings._problems import access_problems, describe_errors
from storage import validate_database_url


def _split_ids(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(SettingsFields):
    """The bridge's configuration; field names are the environment variables, upper-cased."""

    @field_validator(
        "allowed_slack_users", "allowed_slack_channels", "admin_slack_users", mode="before"
    )
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split_ids(value)

    @field_validator("quiet_hours", mode="before")
    @classmethod
    def _quiet_hours(cls, value: object) -> object:
        if isinstance(value, str):
            return QuietHours.parse(value) if value.strip() else None
        return value

    @field_validator("quiet_hours_tz")
    @classmethod
    def _zone(cls, value: str) -> str:
        if zone_named(value) is None:
            raise ValueError(f"{value!r} is not a time zone name such as America/New_York")
        return value.strip()

    @field_validator("signature", mode="before")
    @classmethod
    def _signature(cls, value: object) -> object:
        if isinstance(value, str):
            return Signature.parse(value) if value.strip() else None
        return value

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("must start with xoxb-")
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("must start with xapp-")
        return value

    @field_validator(
        "slack_bot_token",
        "slack_client_id",
        "slack_client_secret",
        "slack_signing_secret",
        "slack_inbox_channel",
        "ghl_api_token",
        "ghl_location_id",
        "ghl_client_id",
        "ghl_client_secret",
        "ghl_app_id",
        "public_url",
        "token_encryption_key",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("ghl_location_id", "ghl_client_id", "ghl_app_id")
    @classmethod
    def _stripped(cls, value: str | None) -> str | None:
        return value.strip() if value is not None else None

    @field_validator("token_encryption_key")
    @classmethod
    def _fernet_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                Fernet(value.get_secret_value().strip().encode("ascii"))
            except (ValueError, UnicodeEncodeError) as exc:
                raise ValueError("is not a Fernet key (32 url-safe base64-encoded bytes)") from exc
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = value.strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL such as https://bridge.example.com")
        if parts.query or parts.fragment:
            raise ValueError("must be a base URL, without ? or #")
        return url

    @field_validator("slack_api_url", "slack_authorize_url", "ghl_api_url", "ghl_marketplace_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        # slack_sdk joins method names onto base_url as-is.
        return value if value.endswith("/") else value + "/"

    @field_validator("ghl_webhook_public_key")
    @classmethod
    def _ed25519_pem(cls, value: str) -> str:
        pem = value.replace("\\n", "\n").strip() + "\n"
        try:
            key = load_pem_public_key(pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise ValueError("is not a PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("is not an Ed25519 key")
        return pem

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return validate_database_url(value.strip())

    @field_validator("phone_default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError("is not a known region code")
        return region

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("is not a log level")
        return level

    @field_validator("ghl_marketplace_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="wrap")
    @classmethod
    def _ways_to_slack_and_highlevel(
        cls, data: Any, handler: ModelWrapValidatorHandler[Settings]
    ) -> Settings:
        # The ways to Slack and to HighLevel are checked here, beside pydantic's own errors
        # (it skips "after" checks when a field is wrong), so one run names every problem.
        try:
            settings = handler(data)
        except ValidationError as exc:
            problems = access_problems(data) if isinstance(data, Mapping) else []
            errors = exc.errors(include_url=False)
            if not problems or any(error["loc"] == () for error in errors):
                raise
            line_errors: list[InitErrorDetails] = [
                {
                    "type": error["type"],
                    "loc": error["loc"],
                    "input": error["input"],
                    **({"ctx": error["ctx"]} if "ctx" in error else {}),  # type: ignore[typeddict-item]
                }
                for error in errors
            ]
            raise ValidationError.from_exception_data(
                exc.title, line_errors + _problem_errors(problems, data)
            ) from None
        problems = access_problems(settings.model_dump())
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, _problem_errors(problems, data))
        return settings

    @property
    def slack_oauth_enabled(self) -> bool:
        """The app installs into workspaces through Slack's OAuth (/slack/install)."""
        return self.slack_client_id is not None and self.slack_client_secret is not None

    @property
    def slack_redirect_uri(self) -> str | None:
        return f"{self.public_url}/slack/oauth_redirect" if self.public_url else None

    @property
    def oauth_enabled(self) -> bool:
        """Sub-accounts connect through the Marketplace app (OAuth)."""
        return self.ghl_client_id is not None and self.ghl_client_secret is not None

    @property
    def pit_location(self) -> tuple[str, SecretStr] | None:
        """The location of GHL_API_TOKEN and the token, when set."""
        if self.ghl_api_token is None or self.ghl_location_id is None:
            return None
        return self.ghl_location_id, self.ghl_api_token

    @property
    def app_id(self) -> str | None:
        """GHL_APP_ID, else the Marketplace client id up to its first "-" (HighLevel's shape)."""
        if self.ghl_app_id:
            return self.ghl_app_id
        return self.ghl_client_id.split("-", 1)[0] if self.ghl_client_id else None

    @property
    def oauth_redirect_uri(self) -> str | None:
        return f"{self.public_url}/ghl/oauth/callback" if self.public_url else None

    @property
    def socket_mode(self) -> bool:
        """Slack traffic arrives over Socket Mode rather than HTTP."""
        return self.slack_app_token is not None


def _problem_errors(problems: list[str], data: Any) -> list[InitErrorDetails]:
    return [
        {"type": PydanticCustomError("access", problem), "loc": (), "input": data}
        for problem in problems
    ]


class SettingsError(Exception):
    """Settings could not be loaded; ``lines`` says, one line per variable, what to set."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, raising `SettingsError` with one line per problem."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_errors(exc)) from None
