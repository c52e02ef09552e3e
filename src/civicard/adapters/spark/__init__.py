"""Beyond one machine: the saved dedup model on Splink's Spark backend and the compiled rule SQL on Spark SQL."""
