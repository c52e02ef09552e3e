"""One local SparkSession for the Spark tests, stopped at the end of the session.

Without pyspark or a Java runtime the tests skip loudly, except under CI=true, where they fail:
CI must exercise the Spark path (.ci/run installs Java from Debian when it is missing).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def _missing() -> str | None:
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (pip install -e '.[dev]')"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java runtime (apt-get install default-jre-headless)"
    return None


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    problem = _missing()
    if problem:
        if IN_CI:
            pytest.fail(f"CI=true but {problem}")
        pytest.skip(f"SKIPPING SPARK TESTS — {problem}")
    from civicard.adapters.spark.session import spark_session

    session = spark_session(tmp_path_factory.mktemp("spark"))
    try:
        yield session
    finally:
        session.stop()
