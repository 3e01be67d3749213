"""The base of every pack: frozen pydantic models read from versioned YAML, validated at boot."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from packs.canonical import config_hash
from schemas.errors import AlphaError

P = TypeVar("P", bound="Pack")


class PackError(AlphaError):
    """A pack file is missing, not YAML, or does not validate (the worker must not start)."""


class Pack(BaseModel):
    """A frozen, strict configuration pack (tuples, not lists; units in field names)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)

    def canonical(self) -> dict[str, Any]:
        """Return the pack as JSON data (the input of ``config_hash``)."""
        return self.model_dump(mode="json")

    def hash(self) -> str:
        """Return this pack's own ``sha256:`` hash."""
        return config_hash(self.canonical())


def load_pack(path: Path, model: type[P]) -> P:
    """Read and validate a pack file.

    Raises:
        PackError: With the file and the first failing field, in one line.
    """
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PackError(f"pack file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise PackError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise PackError(
            f"{path}: {where}: {first['msg']} ({exc.error_count()} problem(s))"
        ) from None
