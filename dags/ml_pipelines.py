"""Airflow DAG wiring: one DAG per pipeline config under PIPELINES_DIR (see plugins/pipeline_ops).

A pipeline with a DAG file of its own here (`dags/<name>.py`, a copy of dags/taxi_tips.py) is
built there, isolated: its mistakes are that file's import error. The others are built here
together, so one broken config among them is an import error of this file that stops them all."""

from pathlib import Path

from pipeline_ops.dag_factory import build_all

globals().update(build_all(skip={p.stem for p in Path(__file__).parent.glob("*.py")}))
