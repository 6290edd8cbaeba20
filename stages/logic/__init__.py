"""Per-partition logic of the stages: plain Python over Arrow and datatrove, never pyspark."""
