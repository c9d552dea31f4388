"""Import time saved per step by the local launcher's warm ML process (pipeline_lib/fork_server.py):
each step of taxi_tips run as a fresh process and forked, back to back, each way in its own
artifact store and model repository, on the taxi sample's window for 2017-01-01.

    .venv-airflow/bin/python bench/fork_server_bench.py [--train-steps 1000] [--json FILE]

The server is started first (its start-up is printed on its own), so the forked column is a warm
worker's; the difference per step is what the imports cost a fresh process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from pipeline_fixtures import write_pipeline

from pipeline_lib import artifacts, fork_server, settings
from pipeline_lib.launchers import LocalLauncher

SPAN = dt.date(2017, 1, 1)
WAYS = ("fresh", "forked")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-steps", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fork-bench-") as tmp:
        work = Path(tmp)
        os.environ["PIPELINE_RUNTIME_DIR"] = str(work / "run")
        start = time.perf_counter()
        fork_server.connect(settings.ml_python(), work / "run", LocalLauncher().environment()).close()
        server_start = time.perf_counter() - start
        log = next((work / "run").glob("*.log")).read_text()
        imported = float(re.search(r"imported the ML stack in ([\d.]+) s", log).group(1))
        results = {way: {} for way in WAYS}
        figures = {}
        try:
            for step in artifacts.STEPS:
                for way in WAYS:
                    os.environ.update(PIPELINE_FORK_SERVER="1" if way == "forked" else "0",
                                      PIPELINE_ARTIFACT_ROOT=str(work / way / "artifacts"),
                                      PIPELINE_SERVING_ROOT=str(work / way / "serving"))
                    config = write_pipeline(work / way / "pipelines", {"training": {"steps": args.train_steps}})
                    step_args = {"config": str(config), "output_dir": str(artifacts.step_dir("taxi_tips", SPAN, step)),
                                 **artifacts.inputs_from(step, results[way]), **artifacts.run_args(step, SPAN, "bench")}
                    results[way][step] = LocalLauncher().run(step, step_args, log=lambda line: None)
                fresh, forked = (results[way][step]["launch"] for way in WAYS)
                figures[step] = {"fresh": fresh, "forked": forked, "saved_seconds": round(fresh["seconds"] - forked["seconds"], 2)}
        finally:
            fork_server.stop(work / "run")
    print(f"warm ML process: started in {server_start:.1f} s (imports {imported:.1f} s), once per worker")
    print(f"{'step':<15} {'fresh s':>8} {'forked s':>9} {'saved s':>8} {'fresh RSS MiB':>14} {'forked RSS MiB':>15}")
    for step, f in figures.items():
        print(f"{step:<15} {f['fresh']['seconds']:>8.2f} {f['forked']['seconds']:>9.2f} {f['saved_seconds']:>8.2f} "
              f"{f['fresh']['peak_rss_mib']:>14} {f['forked']['peak_rss_mib']:>15}")
    total = {way: sum(f[way]["seconds"] for f in figures.values()) for way in WAYS}
    print(f"{'all steps':<15} {total['fresh']:>8.2f} {total['forked']:>9.2f} {total['fresh'] - total['forked']:>8.2f}")
    print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if args.json:
        args.json.write_text(json.dumps({"measured": dt.datetime.now(dt.UTC).isoformat(),
                                         "load_average": os.getloadavg(), "server_start_seconds": round(server_start, 2),
                                         "server_import_seconds": imported, "steps": figures}, indent=2))


if __name__ == "__main__":
    main()
