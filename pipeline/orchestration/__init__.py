"""The Dagster code location: definitions, resources, sensors, checks. Thin over the stages."""
