"""Airflow side of the platform: thin operators that launch pipeline steps in the ML environment,
and the factory that turns each pipeline config into a DAG. Imports no TensorFlow."""
