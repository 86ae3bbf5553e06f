"""The cluster profile: settings chosen by VAD_PROFILE (profile), the workers' Celery app (celery_app,
imported by the workers only), the servers of a one-machine cluster (services, scripts/cluster.py)
and run submission through the Dagster webserver (submit)."""
