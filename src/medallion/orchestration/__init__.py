"""Running medallion from a scheduler: one task attempt at a time, in a fresh process.

- :mod:`~medallion.orchestration.runs`: a scheduler's run id as a medallion run id, one
  attempt of one task (audited), the failure alert, and the end of a run (skipped tasks
  recorded, report, summary alert); no scheduler library;
- :mod:`~medallion.orchestration.airflow`: the Airflow 3 DAGs over them, the only module
  that imports Airflow (importing :mod:`medallion` never does);
- :mod:`~medallion.orchestration.standalone`: a local Airflow (``medallion airflow``).
"""
