"""longmix: the ProLong long-context data recipe as Spark jobs."""

__version__ = "0.1.0"
