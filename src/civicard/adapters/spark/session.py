"""The SparkSession civicard runs on: Splink's similarity jar on the classpath, and settings for a
small local run (tests, a laptop) or an existing cluster (a master URL and its own memory).

Nothing starts at import: `spark_session` is called by whoever runs the job, and stops with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

LOCAL_MASTER = "local[2]"

LOCAL_SETTINGS: dict[str, str] = {
    "spark.driver.memory": "1g",
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "4",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    # Rows arrive from Arrow tables and go back to them; both directions stay columnar.
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # A local run has no use for the adaptive planner's re-planning; it only costs time on tiny data.
    "spark.sql.adaptive.enabled": "false",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.driver.host": "127.0.0.1",
}
"""Small local mode: two cores, four shuffle partitions, no web UI, a 1 GiB driver."""


def similarity_jar() -> str:
    """Splink's jar of string-similarity UDFs (jaro_winkler, damerau_levenshtein, …) for this Spark."""
    from splink.backends.spark import similarity_jar_location

    return str(similarity_jar_location())


def spark_session(
    work_dir: str | Path,
    master: str = LOCAL_MASTER,
    settings: dict[str, str] | None = None,
    app_name: str = "civicard",
) -> SparkSession:
    """A SparkSession with Splink's jar and its warehouse and checkpoint directories under
    `work_dir` (on a cluster: a shared path, e.g. hdfs:// or s3a://). `settings` replace the local
    defaults (pass `{}` on a cluster, where spark-defaults.conf or spark-submit decides)."""
    from pyspark.sql import SparkSession

    chosen = LOCAL_SETTINGS if settings is None else settings
    base = str(work_dir).rstrip("/")  # a str keeps "hdfs://" and "s3a://" intact
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.jars", similarity_jar())
        .config("spark.sql.warehouse.dir", f"{base}/warehouse")
    )
    if settings is None:  # local mode: shuffle files beside the rest, not in /tmp
        builder = builder.config("spark.local.dir", f"{base}/scratch")
    for key, value in chosen.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    spark.sparkContext.setCheckpointDir(f"{base}/checkpoints")
    return spark
