"""medallion_pipeline: `medallion run`'s task graph on Airflow (README, "Airflow").

Schedule: the setting ``airflow_schedule``; settings: medallion.toml and MEDALLION_* of the
Airflow processes, then the Variable ``medallion_settings`` and the Connections
``medallion_source`` / ``medallion_audit`` in each task.
"""

from medallion.orchestration.airflow import pipeline_dag

dag = pipeline_dag()
