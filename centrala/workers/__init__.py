"""rq job entry points, the worker and scheduler processes, and the supervisor behind ``centrala up``."""
