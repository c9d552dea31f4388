"""Airflow DAG wiring: one DAG per pipeline config under PIPELINES_DIR (see plugins/pipeline_ops)."""

from pipeline_ops.dag_factory import build_all

globals().update(build_all())
