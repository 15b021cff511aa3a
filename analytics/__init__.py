"""History store (DuckDB), features (polars), forecaster (scikit-learn) and capacity maths.

Polars in, polars out; the store is the only module that speaks SQL. No Prefect imports.
"""

from analytics.connect import Backoff, StoreLockedError, read_frame
from analytics.rollup import Retention
from analytics.schema import SchemaTooNewError
from analytics.store import Store

__all__ = ["Backoff", "Retention", "SchemaTooNewError", "Store", "StoreLockedError", "read_frame"]
