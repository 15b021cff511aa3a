"""History store (DuckDB), features (polars), forecaster (scikit-learn) and capacity maths."""
