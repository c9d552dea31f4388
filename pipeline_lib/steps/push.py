"""Push: a model that is blessed (TFMA) and infra-validated becomes the next version in the model
repository, with a record of what it came from; anything else is refused here too, whatever the
orchestrator does. A span pushes at most one version (the run's newest span: a model is of the
window that ends with it): re-running or retrying a date reports the version it already pushed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipeline_lib import artifacts, serving


def _verdict(path: str, model: str) -> dict:
    verdict = json.loads(Path(path).read_text())
    judged = verdict.get("candidate", verdict.get("model"))
    if judged != model:
        raise ValueError(f"{path} is for {judged}, not {model}")
    return verdict


def refusals(blessing: dict, infra: dict) -> list[str]:
    out = []
    if not blessing["blessed"]:
        out.append("not blessed: " + "; ".join(blessing["reasons"]))
    if not infra["valid"]:
        out.append("failed infra validation: " + "; ".join(infra["reasons"]))
    return out


def provenance(config, run_id: str, model: str, examples: str, schema: str, transform_graph: str,
               blessing: dict, infra: dict) -> dict:
    trained_on = artifacts.read_result(Path(examples))
    trained = Path(model).parent / artifacts.RESULT_FILENAME  # train's result, next to its model
    return {"pipeline": config.name, "run_id": run_id, "span": trained_on["span"],
            "window": trained_on["window"], "rows": trained_on["rows"], "model": model, "examples": examples,
            "spans": {"count": len(trained_on["spans"]), "newest": trained_on["span"],
                      "excluded": trained_on.get("excluded", [])},
            "schema": {"path": schema, "sha256": hashlib.sha256(Path(schema).read_bytes()).hexdigest()},
            "transform_graph": transform_graph, "metrics": blessing["metrics"]["candidate"],
            "baseline_version": blessing["baseline_version"], "latency_ms": infra.get("latency_ms"),
            "warm_start": json.loads(trained.read_text())["warm_start"] if trained.exists() else None}


def run(config, output_dir: Path, model: str, blessing: str, infra_blessing: str, examples: str,
        schema: str, transform_graph: str, run_id: str, dry_run: bool = False) -> dict:
    verdict, infra = _verdict(blessing, model), _verdict(infra_blessing, model)
    model_dir = config.serving.model_dir()
    refused = refusals(verdict, infra)
    with artifacts.atomic_dir(output_dir) as tmp:
        if refused or dry_run:
            result = {"pushed": False, "version": serving.latest_version(model_dir), "path": None,
                      "reason": ("dry run: " if dry_run else "") + ("; ".join(refused) or "blessed and infra-validated")}
        else:
            record = provenance(config, run_id, model, examples, schema, transform_graph, verdict, infra)
            version, path, new = serving.publish(Path(model), model_dir, record)
            serving.write_model_config()  # a first version joins the model server's list (also on a retry)
            result = {"pushed": new, "version": version, "path": str(path),
                      "reason": "blessed" if new else f"span {record['span']} already pushed as version {version}"}
        artifacts.write_json(tmp / artifacts.RESULT_FILENAME, result)
    return result
