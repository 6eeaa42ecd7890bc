"""The job queue (arq on Redis): the doorbell adapter, thin job functions, the worker and its crons."""
