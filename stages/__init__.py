"""Spark stages: each a function from DataFrame to DataFrame over pure logic in `stages.logic`."""
