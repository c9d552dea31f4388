"""What a person may change for one run when triggering it (web UI, REST API, `dags trigger
--conf`). One table: the DAG factory makes each an Airflow `Param` (validated before the run
starts), the operators pass the run's values to their step as CLI flags, and the CLI parses them.
Imports neither Airflow nor TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunParam:
    name: str
    step: str  # the step that takes it as `--<name>`
    default: Any
    schema: dict = field(default_factory=dict)  # JSON schema, as Airflow's Param takes it
    description: str = ""

    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, text: str):
        """The CLI's side of `to_arg`."""
        if self.schema.get("type") == "boolean":
            if text not in ("true", "false"):
                raise ValueError(f"{self.flag()} takes true or false, not {text!r}")
            return text == "true"
        return int(text)

    def to_arg(self, value) -> str | None:
        """The run's value as the step's argument; None: leave it out (the step's default)."""
        if value is None:
            return None
        return str(value).lower() if isinstance(value, bool) else str(value)


RUN_PARAMS: tuple[RunParam, ...] = (
    RunParam("window_days", "ingest", None, {"type": ["null", "integer"], "minimum": 1, "maximum": 36500},
             "Days of spans before the logical date to train on; empty: the config's source.window_days."),
    RunParam("reingest", "ingest", False, {"type": "boolean"},
             "Read this run's span from the source again, even if the source does not say it changed."),
    RunParam("skip_change_threshold", "evaluate", False, {"type": "boolean"},
             "Forced retrain: judge the candidate on value thresholds only, not on its change "
             "against the serving model."),
    RunParam("dry_run", "push", False, {"type": "boolean"},
             "Run every step but do not push the model to serving."),
)


def for_step(step: str) -> tuple[RunParam, ...]:
    return tuple(p for p in RUN_PARAMS if p.step == step)


def step_args(step: str, values: dict) -> dict[str, str]:
    """The step's flags from a run's param values (missing or None: the step's default)."""
    out = {}
    for p in for_step(step):
        arg = p.to_arg(values.get(p.name, p.default))
        if arg is not None:
            out[p.name] = arg
    return out
