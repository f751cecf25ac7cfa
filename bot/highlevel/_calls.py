"""The face the client's mixed-in call groups (`_uploads`, `_inbox_calls`, `_contact_calls`)
see of it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from ._wire import _Kind

_ModelT = TypeVar("_ModelT", bound=BaseModel)


class ClientCalls:
    """Mixed into HighLevelClient, whose `_request`, `_read` and `_parse` its subclasses use."""

    _location_id: str
    _conversations_version: str
    _contacts_version: str

    if TYPE_CHECKING:

        async def _request(
            self,
            method: str,
            path: str,
            *,
            kind: _Kind,
            version: str,
            params: Mapping[str, str | int] | None = None,
            json: Any = None,
            data: Mapping[str, str] | None = None,
            files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
        ) -> Any: ...

        async def _read(
            self,
            path: str,
            *,
            params: Mapping[str, str | int] | None = None,
            version: str | None = None,
        ) -> Any: ...

        @staticmethod
        def _parse(model: type[_ModelT], body: Any, *, kind: _Kind) -> _ModelT: ...
