"""Prefect flows that run the DVC pipeline on infrastructure (DESIGN.md §4).

DVC owns the DAG: `pipeline.dag` reads the stage graph from DVC and runs single stages without
Prefect; `pipeline.flows` runs the graph as Prefect tasks (retries, logs, independent stages
concurrently); `pipeline.sweep` queues and runs `dvc exp` parameter sweeps and tabulates them.
Nothing here is imported by the stages: Prefect's start-up cost stays out of `dvc repro`.
"""
