"""Thin Prefect tasks and I/O adapters (the proxmoxer gateway lives in tasks.pve)."""
