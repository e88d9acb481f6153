"""HTTP routes, one module per resource: submit (POST jobs and uploads), jobs, health."""
