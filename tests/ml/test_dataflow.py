"""The Beam steps on Dataflow: the exact pipeline options a `beam.dataflow` config produces (no
cloud here; Beam parses them as the steps would pass them to DataflowRunner)."""

from __future__ import annotations

from pipeline_fixtures import write_pipeline

from pipeline_lib.beam import pipeline_options
from pipeline_lib.config import load_config

DATAFLOW = {"project": "acme-prod", "region": "europe-west4", "temp_location": "gs://acme-ml/tmp/",
            "sdk_container_image": "europe-docker.pkg.dev/acme-prod/ml/taxi-ml:1.2",
            "machine_type": "n2-standard-8", "max_num_workers": 20,
            "service_account_email": "ml@acme-prod.iam.gserviceaccount.com"}


def test_a_dataflow_config_gives_exactly_these_pipeline_options(tmp_path):
    config = load_config(write_pipeline(tmp_path, {"beam": {"dataflow": DATAFLOW,
                                                            "pipeline_args": ["--labels=team=ml"]}}))
    options = pipeline_options(config, num_rows=10_000_000, temp_dir="/local/unused")
    assert options.get_all_options(drop_default=True) == {
        "runner": "DataflowRunner", "project": "acme-prod", "region": "europe-west4",
        "temp_location": "gs://acme-ml/tmp/", "staging_location": "gs://acme-ml/tmp/staging",
        "sdk_container_image": "europe-docker.pkg.dev/acme-prod/ml/taxi-ml:1.2", "sdk_location": "container",
        "machine_type": "n2-standard-8", "max_num_workers": 20, "experiments": ["use_runner_v2"],
        "service_account_email": "ml@acme-prod.iam.gserviceaccount.com", "labels": ["team=ml"]}

