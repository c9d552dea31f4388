"""TFX-style ML pipelines on Airflow 3.

Modules here import no TensorFlow at top level, so the Airflow environment can use the config,
settings and launchers; `pipeline_lib.steps` runs only in the ML environment.
"""
