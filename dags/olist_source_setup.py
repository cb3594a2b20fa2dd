"""olist_source_setup: create the Olist source, then load Kaggle CSVs or generate data.

Trigger it by hand with params ``scale``, ``seed``, ``dirty_rate`` or ``csv_dir``.
"""

from medallion.orchestration.airflow import source_setup_dag

dag = source_setup_dag()
