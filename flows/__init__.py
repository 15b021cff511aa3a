"""Prefect flows, settings, the CLI and the wiring: the one composition root of proxflow."""
