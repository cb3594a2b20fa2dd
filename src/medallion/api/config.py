"""Settings profiles: the settings that point every part at a deployment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medallion.profiles import (
    Profile,
    Value,
    env_lines,
    get_profile,
    profile_variables,
    resolve,
    write_toml,
)
from medallion.settings import Settings


@dataclass(frozen=True)
class ProfileSettings:
    """A settings profile resolved: its settings, where its variables came from, and the
    ``${NAME}`` placeholders left in it (secrets not asked for, variables not defined)."""

    profile: Profile
    settings: dict[str, Value]
    env_file: Path | None
    placeholders: list[str]

    def env_lines(self) -> list[str]:
        return env_lines(self.settings)


def settings_profile(
    name: str, env_file: Path | None = None, *, show_secrets: bool = False
) -> ProfileSettings:
    """The settings of profile ``name`` (``stack``: the compose stack from this host), with
    the variables of its ``.env`` file (or ``env_file``) and of the environment filled in;
    secrets stay ``${NAME}`` unless ``show_secrets``."""
    profile = get_profile(name)
    variables, read = profile_variables(profile, env_file)
    resolved = resolve(profile, variables, show_secrets=show_secrets)
    left = [v for v in profile.variables() if f"${{{v}}}" in str(resolved)]
    return ProfileSettings(profile, resolved, read, left)


def write_settings_profile(
    settings: Settings, name: str, env_file: Path | None = None
) -> tuple[Path, ProfileSettings]:
    """Write profile ``name``, secrets included, into ``<home>/medallion.toml`` (mode 600),
    keeping the other settings there."""
    resolved = settings_profile(name, env_file, show_secrets=True)
    return write_toml(settings.home, resolved.settings), resolved
