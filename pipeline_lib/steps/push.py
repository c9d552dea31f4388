"""Push: a blessed model becomes the next version in the model repository; anything else is
refused here too, whatever the orchestrator does."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline_lib import artifacts, serving


def run(config, output_dir: Path, model: str, blessing: str, dry_run: bool = False) -> dict:
    verdict = json.loads(Path(blessing).read_text())
    if verdict.get("candidate") != model:
        raise ValueError(f"blessing {blessing} is for {verdict.get('candidate')}, not {model}")
    with artifacts.atomic_dir(output_dir) as tmp:
        if verdict["blessed"] and not dry_run:
            version, path = serving.publish(Path(model), config.serving.model_dir())
            result = {"pushed": True, "version": version, "path": str(path), "reason": "blessed"}
        else:
            result = {"pushed": False, "version": serving.latest_version(config.serving.model_dir()),
                      "path": None, "reason": ("dry run: " if dry_run else "")
                      + ("blessed" if verdict["blessed"] else "not blessed: " + "; ".join(verdict["reasons"]))}
        artifacts.write_json(tmp / artifacts.RESULT_FILENAME, result)
    return result
