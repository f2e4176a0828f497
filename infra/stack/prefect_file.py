"""``prefect.yaml`` as the stack reads it: its deployments, work pool and the variables it reads."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from infra.stack.reporting import StackError
from settings import PROJECT_DIR

PREFECT_FILE = PROJECT_DIR / "prefect.yaml"
TEMPLATE_VARIABLE = re.compile(r"{{\s*\$(\w+)\s*}}")


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment of prefect.yaml."""

    name: str
    entrypoint: str
    trigger_names: tuple[str, ...]

    @property
    def flow_file(self) -> Path:
        return PROJECT_DIR / self.entrypoint.split(":", 1)[0]

    @property
    def flow_function(self) -> str:
        return self.entrypoint.split(":", 1)[1]

    def flow_exists(self) -> bool:
        """The entrypoint's file defines its flow function (checked without importing it)."""
        try:
            source = self.flow_file.read_text(encoding="utf-8")
        except OSError:
            return False
        return re.search(rf"^(async\s+)?def\s+{re.escape(self.flow_function)}\s*\(",
                         source, re.MULTILINE) is not None


def read_prefect_file(path: Path = PREFECT_FILE) -> dict:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise StackError(f"cannot read {path}: {exc}") from exc


def deployment_specs(path: Path = PREFECT_FILE) -> list[DeploymentSpec]:
    config = read_prefect_file(path)
    return [
        DeploymentSpec(
            d["name"], d["entrypoint"],
            tuple(t["name"] for t in d.get("triggers") or [] if t.get("name")),
        )
        for d in config.get("deployments") or []
    ]


def work_pool_name(path: Path = PREFECT_FILE) -> str:
    pools = {d["work_pool"]["name"] for d in read_prefect_file(path).get("deployments") or []}
    if len(pools) != 1:
        raise StackError(f"{path} must name one work pool, names {sorted(pools)}")
    return pools.pop()


def template_variables(path: Path = PREFECT_FILE) -> set[str]:
    """The environment variables prefect.yaml reads (``{{ $NAME }}``; comments aside)."""
    return set(TEMPLATE_VARIABLE.findall(json.dumps(read_prefect_file(path))))
