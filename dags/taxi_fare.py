"""This pipeline's DAG, in a file of its own (named after the pipeline): a mistake in its config,
module or schema is an Airflow import error of this file only (plugins/pipeline_ops/dag_factory.py)."""

from pipeline_ops.dag_factory import pipeline_dag

dag = pipeline_dag(__file__)
