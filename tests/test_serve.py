"""The Prefect deployments of the pipeline (`python -m pipeline.serve`)."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_deployments_of_the_dag_and_the_sweep(tmp_path: Path):
    from pipeline.serve import deployments

    dag, sweep = deployments(tmp_path, cron="0 3 * * *")
    assert (dag.name, dag.flow_name) == ("dvc-repro", "dvc-repro")
    assert dag.parameters == {"root": str(tmp_path)}
    assert [s.schedule.cron for s in dag.schedules] == ["0 3 * * *"]
    assert sweep.name == "sweep" and sweep.parameters == {"root": str(tmp_path), "variants": []}
    assert not sweep.schedules  # on demand
    assert not deployments(tmp_path)[0].schedules


def test_serve_needs_a_server(monkeypatch: pytest.MonkeyPatch, capsys):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipeline.serve import main

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    # Neither the environment nor a profile (nor the session's test server) names one.
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert main([]) == 2
    assert "prefect server start --host 127.0.0.1" in capsys.readouterr().err
