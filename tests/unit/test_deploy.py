"""The deployment files, checked without Docker: deploy/compose.yaml is valid Compose (the
specification's JSON schema), takes every secret from deploy/.env, and sets only real settings,
which the settings class resolves to the stack; the Dockerfile keeps the rules that matter;
`medallion config profile stack` points at the ports the stack publishes."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from medallion.cli import app
from medallion.profiles import STACK, env_lines, read_env_file, resolve
from medallion.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|WEBHOOK|CREDENTIAL", re.IGNORECASE)
# $$ (a literal $), ${NAME...} or a bare $NAME, in the order compose reads them
_DOLLAR = re.compile(r"\$\$|\$\{(?P<braced>[^}]*)\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>.*))?")
runner = CliRunner()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MEDALLION_* setting and no stack variable leaks in from the machine."""
    stack_variables = set(read_env_file(ENV_EXAMPLE))
    for name in list(os.environ):
        if name.startswith("MEDALLION_") or name in stack_variables:
            monkeypatch.delenv(name)


# -- compose's interpolation, as the Compose Specification defines it ---------------------


def interpolate(text: str, env: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        braced = match.group("braced")
        if braced is None:
            return env.get(match.group("bare"), "")
        parts = _BRACED.fullmatch(braced)
        assert parts, f"not an interpolation compose knows: ${{{braced}}}"
        name, op, arg = parts.group("name", "op", "arg")
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op is not None and op.endswith("-") and unset:
            return arg
        if op is not None and op.endswith("?") and unset:
            raise AssertionError(f"{name} is required: {arg}")
        return value or ""

    return _DOLLAR.sub(one, text)


def interpolated(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {k: interpolated(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolated(v, env) for v in node]
    return node


def strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*strings(k), *strings(v))]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return []


def variables_used(node: Any) -> tuple[set[str], set[str]]:
    """(${NAME} variables, bare $NAME variables) that compose would substitute."""
    braced, bare = set(), set()
    for text in strings(node):
        for match in _DOLLAR.finditer(text):
            if match.group("braced") is not None:
                braced.add(match.group("braced").split(":")[0].split("-")[0].split("?")[0])
            elif match.group("bare") is not None:
                bare.add(match.group("bare"))
    return braced, bare


def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


def raw_compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    """compose.yaml as `docker compose config` would see it with deploy/.env = .env.example."""
    resolved = interpolated(raw_compose(), env_example() if env is None else env)
    assert isinstance(resolved, dict)
    return resolved


def service_env(service: str) -> dict[str, str]:
    environment = compose()["services"][service].get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {k: "" if v is None else str(v) for k, v in environment.items()}


def setting_name(variable: str) -> str:
    return variable.removeprefix("MEDALLION_").split("__", 1)[0].lower()


def settings_from(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], home: Path) -> Settings:
    for name, value in env.items():
        if name.startswith("MEDALLION_"):
            monkeypatch.setenv(name, value)
    return load_settings(home=home)


def published(service: str) -> dict[int, tuple[str, int]]:
    """Container port -> (host address, host port) of a service's `ports`."""
    found = {}
    for entry in compose()["services"][service].get("ports", []):
        host_ip, host_port, container_port = str(entry).split(":")
        found[int(container_port)] = (host_ip, int(host_port))
    return found


def listeners(variable: str) -> dict[str, str]:
    """KAFKA_*LISTENERS as name -> host:port."""
    value = service_env("kafka")[variable]
    return dict(item.split("://", 1) for item in value.split(","))


def storage_options(settings: Settings) -> dict[str, str]:
    return {k: v.get_secret_value() for k, v in settings.storage_options.items()}


# -- compose.yaml ---------------------------------------------------------------------------


def test_compose_is_valid_against_the_compose_specification() -> None:
    schema = json.loads((REPO / "tests" / "data" / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    for label, document in (("as written", raw_compose()), ("interpolated", compose())):
        problems = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(document)
        ]
        assert problems == [], label
    assert "version" not in raw_compose()  # obsolete in the Compose Specification


def test_compose_has_the_services_of_the_stack() -> None:
    services = compose()["services"]
    assert {"postgres", "minio", "createbuckets", "kafka", "airflow", "medallion"} <= set(services)
    assert services["medallion"]["command"][0] == "demo"
    assert services["airflow"]["command"] == "standalone"


def test_every_variable_compose_uses_is_in_env_example_and_braced() -> None:
    braced, bare = variables_used(raw_compose())
    defined = set(env_example())
    assert braced - defined == set(), "add them to deploy/.env.example"
    assert bare == set(), "write ${NAME}: a bare $NAME is easy to miss ($$NAME for the shell)"
    assert defined - braced == set(), "deploy/.env.example defines variables nothing uses"


def test_secrets_come_only_from_the_env_file() -> None:
    raw = raw_compose()
    for name, service in raw["services"].items():
        environment = service.get("environment", {})
        for key, value in environment.items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{\w+(:-)?\}", str(value)), f"{name}.{key}: use ${{VAR}}"
    for text in strings(raw):
        for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", text):
            assert password.startswith("${"), f"a password written into compose.yaml: {text}"
    options = json.loads(raw["x-medallion-env"]["MEDALLION_STORAGE_OPTIONS"])
    assert options["AWS_ACCESS_KEY_ID"].startswith("${")
    assert options["AWS_SECRET_ACCESS_KEY"].startswith("${")
    text = COMPOSE.read_text()
    for name, value in env_example().items():
        if SECRET_NAME.search(name) and value:
            assert value not in text, f"the value of {name} is written into compose.yaml"


def test_images_are_pinned() -> None:
    for name, service in compose()["services"].items():
        image = service.get("image", "")
        assert image, f"{name}: no image"
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image}"
        if "build" not in service:  # pulled: a version, not a moving name
            assert re.search(r"\d", tag), f"{name}: {image} is not a version"


def test_builds_use_stages_of_the_dockerfile() -> None:
    stages = {s["name"] for s in dockerfile_stages()}
    for name, service in compose()["services"].items():
        if "build" in service:
            build = service["build"]
            context = (COMPOSE.parent / build["context"]).resolve()
            assert context == REPO, name
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
            assert build["target"] in stages, f"{name}: no stage {build['target']!r}"


def test_services_wait_for_healthy_dependencies_and_volumes_are_named() -> None:
    document = compose()
    services = document["services"]
    for name, service in services.items():
        for dependency, how in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = how["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency}: no healthcheck"
            else:
                assert condition == "service_completed_successfully", f"{name} -> {dependency}"
                assert services[dependency].get("restart") == "no", dependency
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith("."):
                assert source in document["volumes"], f"{name}: volume {source} not declared"
            else:
                assert (COMPOSE.parent / source).resolve().is_relative_to(REPO), volume
    for name in ("postgres", "minio", "kafka", "airflow"):
        assert "healthcheck" in services[name], name
    for name in ("airflow", "medallion"):
        wanted = {"postgres": "service_healthy", "kafka": "service_healthy"}
        wanted["createbuckets"] = "service_completed_successfully"
        got = {k: v["condition"] for k, v in services[name]["depends_on"].items()}
        assert got == wanted, name
    assert services["createbuckets"]["depends_on"] == {"minio": {"condition": "service_healthy"}}


def test_ports_are_published_on_the_loopback_only() -> None:
    for name, service in compose()["services"].items():
        for entry in service.get("ports", []):
            assert str(entry).startswith("127.0.0.1:"), f"{name}: {entry} listens on every address"


def test_medallion_variables_are_real_settings() -> None:
    names = [k for k in env_example() if k.startswith("MEDALLION_")]
    for service in compose()["services"].values():
        names += [k for k in service.get("environment", {}) if k.startswith("MEDALLION_")]
    assert names
    unknown = sorted({n for n in names if setting_name(n) not in Settings.model_fields})
    assert unknown == []


@pytest.mark.parametrize("service", ["medallion", "airflow"])
def test_the_stack_settings_resolve_to_the_stack(
    service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = env_example()
    settings = settings_from(monkeypatch, service_env(service), tmp_path)
    user, password = env["POSTGRES_USER"], env["POSTGRES_PASSWORD"]
    assert settings.source_location == f"postgresql://{user}:{password}@postgres:5432/olist"
    assert settings.audit_location == f"postgresql://{user}:{password}@postgres:5432/medallion"
    assert settings.lake_location == "s3://lake/medallion"
    assert storage_options(settings) == {
        "AWS_ENDPOINT_URL": "http://minio:9000",
        "AWS_ACCESS_KEY_ID": env["LAKE_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": env["LAKE_SECRET_ACCESS_KEY"],
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
        "AWS_CONDITIONAL_PUT": "etag",
    }
    assert settings.kafka_bootstrap_servers == "kafka:29092"
    assert listeners("KAFKA_ADVERTISED_LISTENERS")["INTERNAL"] == "kafka:29092"
    for secret in (settings.discord_webhook_url, settings.slack_webhook_url, settings.webhook_url):
        assert secret is None or secret.get_secret_value() == ""  # no alerts until set
    assert password not in str(settings.redacted())


def test_the_stack_creates_what_the_settings_name() -> None:
    services = compose()["services"]
    init = (DEPLOY / "postgres" / "init.sql").read_text()
    created = set(re.findall(r"^CREATE DATABASE (\w+);", init, re.MULTILINE))
    assert created == {"olist", "medallion", "airflow"}
    mounted = [v for v in services["postgres"]["volumes"] if v.startswith("./postgres/init.sql:")]
    assert mounted and ":/docker-entrypoint-initdb.d/" in mounted[0]
    assert services["postgres"]["environment"]["POSTGRES_DB"] not in created
    script = services["createbuckets"]["command"][0]
    assert "mc mb --ignore-existing stack/lake" in script
    assert "airflow" in services["airflow"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


# -- the Dockerfile -------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, rest = pending.strip().partition(" ")
        found.append((keyword.upper(), rest.strip()))
        pending = ""
    return found


def dockerfile_stages() -> list[dict[str, Any]]:
    stages: list[dict[str, Any]] = []
    for keyword, rest in dockerfile_instructions():
        if keyword == "FROM":
            image, _, name = rest.partition(" AS ")
            stages.append({"image": image.strip(), "name": name.strip(), "lines": []})
        else:
            stages[-1]["lines"].append((keyword, rest))
    return stages


def test_dockerfile_images_are_pinned_and_the_runtime_is_not_root() -> None:
    stages = dockerfile_stages()
    names = [s["name"] for s in stages]
    assert names == ["build", "airflow", "runtime"]  # the default target is the CLI
    for stage in stages:
        image = stage["image"]
        if image in names:
            continue
        tag = image.rpartition(":")[2]
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), image
    assert stages[0]["image"].startswith("python:3.11") and stages[2]["image"].startswith(
        "python:3.11"
    )
    runtime = dict(stages[2]["lines"])
    user = [rest for keyword, rest in stages[2]["lines"] if keyword == "USER"][-1]
    assert user.split(":")[0] not in {"root", "0"}
    assert json.loads(runtime["ENTRYPOINT"]) == ["medallion"]
    assert "HEALTHCHECK" not in runtime  # a CLI, not a server


def test_dockerfile_has_no_secrets_and_installs_every_extra() -> None:
    for keyword, rest in dockerfile_instructions():
        if keyword in {"ENV", "ARG"}:
            names = re.findall(r"(\w+)=", rest) or [rest.split()[0]]
            assert not [n for n in names if SECRET_NAME.search(n)], rest
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    # s3 is a local S3 server (SeaweedFS) for tests and trying the lake out: the stack has MinIO
    # airflow: the image's airflow stage starts from Apache's Airflow image, which has it
    extras = set(pyproject["project"]["optional-dependencies"]) - {"dev", "s3", "airflow"}
    wheel = [rest for keyword, rest in dockerfile_instructions() if "pip wheel" in rest]
    assert len(wheel) == 1
    installed = re.search(r'"\.\[([\w,]+)\]"', wheel[0])
    assert installed and set(installed.group(1).split(",")) == extras
    for stage in dockerfile_stages()[1:]:  # each installs exactly the built wheel, offline
        pip = [rest for keyword, rest in stage["lines"] if "pip install" in rest]
        assert pip and "--no-index" in pip[0] and "/wheels/medallion.txt" in pip[0], stage["name"]


def test_dockerignore_sends_only_the_package() -> None:
    rules = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"
    kept = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied = {
        part.rstrip("/")
        for keyword, rest in dockerfile_instructions()
        if keyword == "COPY" and "--from" not in rest
        for part in rest.split()[:-1]
    }
    assert copied <= kept
    assert ".env" not in kept and "deploy" not in kept


# -- medallion config profile stack ---------------------------------------------------------


def parse_env_lines(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        if line and not line.startswith("#"):
            (word,) = shlex.split(line)
            name, value = word.split("=", 1)
            found[name] = value
    return found


def host_side() -> dict[str, str]:
    """Inside the stack -> from the host, as compose.yaml publishes and advertises them."""
    postgres, minio = published("postgres")[5432], published("minio")[9000]
    kafka_host = listeners("KAFKA_ADVERTISED_LISTENERS")["HOST"]  # what clients are told
    kafka_port = int(listeners("KAFKA_LISTENERS")["HOST"].rpartition(":")[2])
    host, port = kafka_host.split(":")
    assert published("kafka")[kafka_port] == (host, int(port))
    return {
        "@postgres:5432/": f"@{postgres[0]}:{postgres[1]}/",
        "http://minio:9000": f"http://{minio[0]}:{minio[1]}",
        "kafka:29092": kafka_host,
    }


def test_profile_names_real_settings() -> None:
    assert set(STACK.settings) <= set(Settings.model_fields)
    assert set(STACK.variables()) <= set(env_example())
    assert STACK.secrets <= set(STACK.variables())
    assert {n for n in STACK.variables() if SECRET_NAME.search(n)} <= STACK.secrets


def test_profile_stack_is_the_stack_seen_from_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inside = settings_from(monkeypatch, service_env("medallion"), tmp_path / "in")
    for name in list(os.environ):
        if name.startswith("MEDALLION_"):
            monkeypatch.delenv(name)
    lines = env_lines(resolve(STACK, env_example(), show_secrets=True))
    outside = settings_from(monkeypatch, parse_env_lines(lines), tmp_path / "out")

    def seen_from_host(text: str) -> str:
        for inner, outer in host_side().items():
            text = text.replace(inner, outer)
        return text

    assert outside.source_location == seen_from_host(inside.source_location)
    assert outside.audit_location == seen_from_host(inside.audit_location)
    assert outside.lake_location == inside.lake_location
    assert storage_options(outside) == {
        k: seen_from_host(v) for k, v in storage_options(inside).items()
    }
    assert outside.kafka_bootstrap_servers == seen_from_host(inside.kafka_bootstrap_servers)
    assert urlsplit(outside.source_location).hostname == "127.0.0.1"
    assert outside.kafka_bootstrap_servers == "127.0.0.1:9092"


def test_profile_shows_secrets_only_when_asked() -> None:
    env = env_example()
    text = "\n".join(env_lines(resolve(STACK, env)))
    assert env["POSTGRES_PASSWORD"] not in text and env["LAKE_SECRET_ACCESS_KEY"] not in text
    assert "${POSTGRES_PASSWORD}" in text and "${LAKE_SECRET_ACCESS_KEY}" in text
    assert f"postgresql://{env['POSTGRES_USER']}:${{POSTGRES_PASSWORD}}@127.0.0.1" in text
    shown = "\n".join(env_lines(resolve(STACK, env, show_secrets=True)))
    assert "${" not in shown and env["POSTGRES_PASSWORD"] in shown
    unset = "\n".join(env_lines(resolve(STACK, {})))
    assert "${POSTGRES_USER}" in unset  # no .env: every variable stays a placeholder
    with pytest.raises(Exception, match="POSTGRES_USER is not set"):
        resolve(STACK, {}, show_secrets=True)


def test_profile_percent_encodes_what_goes_into_a_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**env_example(), "POSTGRES_PASSWORD": "p@ss/w:rd%", "LAKE_SECRET_ACCESS_KEY": "a/b+c"}
    lines = env_lines(resolve(STACK, env, show_secrets=True))
    settings = settings_from(monkeypatch, parse_env_lines(lines), tmp_path)
    url = urlsplit(settings.source_location)
    assert url.password is not None and unquote(url.password) == "p@ss/w:rd%"
    assert (url.hostname, url.port, url.path) == ("127.0.0.1", 5432, "/olist")
    assert storage_options(settings)["AWS_SECRET_ACCESS_KEY"] == "a/b+c"  # not a URL: as is


def test_env_files_are_read_as_compose_reads_them(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text(
        "# a comment\n\nA=1\nexport B='two words'\nC=\"quoted # kept\"\nD=plain # a comment\nE=\n"
    )
    assert read_env_file(path) == {"A": "1", "B": "two words", "C": "quoted # kept", "D": "plain",
                                   "E": ""}  # fmt: skip
    path.write_text("A=1\nnot a line\n")
    with pytest.raises(Exception, match=r"\.env:2"):
        read_env_file(path)


def test_cli_prints_the_profile_and_writes_it(tmp_path: Path) -> None:
    env_file = tmp_path / "stack.env"
    env_file.write_text(ENV_EXAMPLE.read_text())
    secret = env_example()["POSTGRES_PASSWORD"]
    result = runner.invoke(app, ["config", "profile", "stack", "--env-file", str(env_file)])
    assert result.exit_code == 0, result.output
    assert secret not in result.output and "MEDALLION_LAKE_URI=s3://lake/medallion" in result.output
    assert "POSTGRES_PASSWORD" in result.output.splitlines()[1]  # the placeholders are named
    shown = runner.invoke(
        app, ["config", "profile", "stack", "--env-file", str(env_file), "--show-secrets"]
    )
    assert shown.exit_code == 0 and secret in shown.output
    lines = parse_env_lines(shown.output.splitlines())
    assert set(lines) == {f"MEDALLION_{n.upper()}" for n in STACK.settings}

    home = tmp_path / "home"
    home.mkdir()
    (home / "medallion.toml").write_text("# mine\nparallelism = 3\nsource_url = 'old.db'\n")
    written = runner.invoke(
        app, ["config", "profile", "stack", "--env-file", str(env_file), "--write", "--home",
              str(home)],
    )  # fmt: skip
    assert written.exit_code == 0, written.output
    assert secret not in written.output
    toml = home / "medallion.toml"
    assert stat.S_IMODE(toml.stat().st_mode) == 0o600
    settings = load_settings(home=home)
    assert settings.parallelism == 3  # kept
    assert settings.source_location.endswith("@127.0.0.1:5432/olist")
    assert settings.lake_location == "s3://lake/medallion"
    assert storage_options(settings)["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9000"
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    shadowed = runner.invoke(
        app, ["config", "profile", "stack", "--env-file", str(env_file), "--write", "--home",
              str(home)], env={"MEDALLION_LAKE_URI": "elsewhere"},
    )  # fmt: skip
    assert shadowed.exit_code == 0 and "unset MEDALLION_LAKE_URI" in shadowed.output


def test_cli_profile_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no deploy/.env here
    unknown = runner.invoke(app, ["config", "profile", "cloud"])
    assert unknown.exit_code == 1 and "unknown profile 'cloud'; known: stack" in unknown.output
    missing = runner.invoke(
        app, ["config", "profile", "stack", "--env-file", str(tmp_path / "nope.env")]
    )
    assert missing.exit_code == 1 and "nope.env not found" in missing.output
    no_env = runner.invoke(
        app, ["config", "profile", "stack", "--write", "--home", str(tmp_path)],
        env={"MEDALLION_HOME": None},
    )  # fmt: skip
    assert no_env.exit_code == 1 and "is not set" in no_env.output
    assert not (tmp_path / "medallion.toml").exists()
    assert "Traceback" not in unknown.output + missing.output + no_env.output
