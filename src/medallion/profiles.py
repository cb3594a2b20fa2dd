"""Settings profiles: where every part of a known deployment is, declared once as data.

``stack`` points the command line on the host at the Docker Compose stack of
``deploy/compose.yaml``, through the ports that file publishes on 127.0.0.1. A value refers to
a variable of the stack's ``.env`` file as ``${NAME}``, as compose does; a secret variable stays
a placeholder unless it is asked for, and a variable substituted into a URL is percent-encoded.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from medallion.errors import ConfigError
from medallion.settings import TOML_NAME

Value = str | dict[str, str]
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


@dataclass(frozen=True)
class Profile:
    """Settings (name -> value; ``${NAME}`` refers to ``env_file``) and which names are secret."""

    name: str
    summary: str
    env_file: Path  # relative to the repository (the working folder), as compose reads it
    settings: Mapping[str, str | Mapping[str, str]]
    secrets: frozenset[str]

    def variables(self) -> list[str]:
        """Every ``${NAME}`` the profile refers to."""
        texts = [v for value in self.settings.values() for v in _texts(value)]
        return sorted({m.group(1) for text in texts for m in _REF.finditer(text)})


STACK = Profile(
    name="stack",
    summary="the Docker Compose stack of deploy/compose.yaml, from this host",
    env_file=Path("deploy/.env"),
    settings={
        "source_url": "postgresql://${POSTGRES_USER}:${POSTGRES_PASSWORD}@127.0.0.1:5432/olist",
        "audit_url": "postgresql://${POSTGRES_USER}:${POSTGRES_PASSWORD}@127.0.0.1:5432/medallion",
        "lake_uri": "s3://lake/medallion",
        "storage_options": {
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
            "AWS_ACCESS_KEY_ID": "${LAKE_ACCESS_KEY_ID}",
            "AWS_SECRET_ACCESS_KEY": "${LAKE_SECRET_ACCESS_KEY}",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
            "AWS_CONDITIONAL_PUT": "etag",  # MinIO commits Delta safely with conditional puts
        },
        "kafka_bootstrap_servers": "127.0.0.1:9092",
    },
    secrets=frozenset({"POSTGRES_PASSWORD", "LAKE_SECRET_ACCESS_KEY"}),
)

PROFILES: dict[str, Profile] = {p.name: p for p in (STACK,)}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines of a compose ``.env`` file (comments, blank lines, ``export`` and
    quotes around a value allowed); no interpolation inside it."""
    found: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if match is None:
            raise ConfigError(f"{path}:{number}: not a NAME=value line")
        name, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:  # an unquoted value ends at a comment
            value = value.split(" #", 1)[0].rstrip()
        found[name] = value
    return found


def profile_variables(
    profile: Profile, env_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> tuple[dict[str, str], Path | None]:
    """The values of the profile's variables as compose resolves them: the environment, then
    the env file (``env_file``, else the profile's own when it exists). Returns the values and
    the file read (None when none was)."""
    path = env_file if env_file is not None else profile.env_file
    if env_file is not None and not path.is_file():
        raise ConfigError(f"env file {path} not found")
    values = read_env_file(path) if path.is_file() else {}
    environ = os.environ if environ is None else environ
    for name in profile.variables():
        if name in environ:
            values[name] = environ[name]
    wanted = set(profile.variables())
    return {k: v for k, v in values.items() if k in wanted}, path if path.is_file() else None


def resolve(
    profile: Profile, variables: Mapping[str, str], *, show_secrets: bool = False
) -> dict[str, Value]:
    """The profile's settings with its variables filled in.

    A secret stays ``${NAME}`` unless ``show_secrets``; so does any variable ``variables``
    lacks, unless ``show_secrets`` (then a missing one is an error: the result is for use).
    """

    def fill(text: str) -> str:
        in_url = "://" in text

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in profile.secrets and not show_secrets:
                return match.group(0)
            if name not in variables:
                if show_secrets:
                    raise ConfigError(
                        f"{name} is not set: define it in {profile.env_file} "
                        f"(cp {profile.env_file}.example {profile.env_file}) or the environment"
                    )
                return match.group(0)
            value = variables[name]
            return quote(value, safe="") if in_url else value

        return _REF.sub(one, text)

    return {
        name: fill(value) if isinstance(value, str) else {k: fill(v) for k, v in value.items()}
        for name, value in profile.settings.items()
    }


def env_lines(resolved: Mapping[str, Value]) -> list[str]:
    """``MEDALLION_<NAME>=value`` lines (a mapping as JSON), quoted for a POSIX shell, which
    dotenv files and compose's ``env_file`` read the same way."""
    lines = []
    for name, value in resolved.items():
        text = value if isinstance(value, str) else json.dumps(value)
        lines.append(f"MEDALLION_{name.upper()}={shlex.quote(text)}")
    return lines


def write_toml(home: Path, resolved: Mapping[str, Value]) -> Path:
    """Put the settings into ``<home>/medallion.toml`` (mode 600, it holds secrets); the other
    settings already there are kept, their comments are not."""
    path = home / TOML_NAME
    current: dict[str, Any] = {}
    if path.is_file():
        try:
            current = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
    current.update(resolved)
    home.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in current.items())
    partial = path.with_name(f".{TOML_NAME}.partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    partial.replace(path)
    path.chmod(0o600)
    return path


def _texts(value: str | Mapping[str, str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value.values())


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def _toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, plus DEL, which TOML wants escaped."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    """Inline TOML for the value types settings have (text, numbers, flags, lists, tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise ConfigError(f"cannot write {type(value).__name__} values to {TOML_NAME}")
