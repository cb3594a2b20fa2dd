"""medallion_streaming: a bounded `medallion stream consume` (until idle or max_messages).

Schedule: the setting ``airflow_stream_schedule`` (empty: by hand); one run at a time.
"""

from medallion.orchestration.airflow import streaming_dag

dag = streaming_dag()
