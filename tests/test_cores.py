"""Sharing the cores: budgets divide what a process was given, children get them through the
environment, pool workers and the Prefect flow's stages get their share."""

from __future__ import annotations

import os

from cocosnet import cores
from cocosnet.parallel import parallel_map
from pipeline.dag import Stage, concurrency


def test_budgets_divide_the_cores_and_never_reach_zero():
    assert cores.thread_budget(1, 8) == 8
    assert cores.thread_budget(2, 8) == 4
    assert cores.thread_budget(3, 8) == 2
    assert cores.thread_budget(16, 8) == 1
    assert cores.thread_budget(0, 8) == 8


def test_a_given_budget_is_divided_again():
    assert cores.current_budget({"OMP_NUM_THREADS": "4"}) == 4
    assert cores.current_budget({}) == cores.available_cores()
    assert cores.current_budget({"OMP_NUM_THREADS": "junk"}) == cores.available_cores()
    env = cores.budget_env(3, {"PATH": "/bin", "OMP_NUM_THREADS": "8"})
    assert env["PATH"] == "/bin"
    assert all(env[name] == "3" for name in cores.THREAD_VARIABLES)


def _threads_in_worker(_):
    import torch

    return os.environ["OMP_NUM_THREADS"], torch.get_num_threads()


def test_pool_workers_get_their_share(monkeypatch):
    monkeypatch.setattr(cores, "process_threads", lambda: 4)
    import cocosnet.parallel as parallel

    monkeypatch.setattr(parallel, "process_threads", lambda: 4)
    got = parallel_map(_threads_in_worker, range(4), workers=2)
    assert set(got) == {("2", 2)}


def _stage(name, *upstream):
    return Stage(name=name, dvcfile="dvc.yaml", cmd=("true",), wdir=".", upstream=upstream)


def test_stages_share_with_the_stages_at_their_depth():
    dag = {
        "prepare": _stage("prepare"),
        "summary": _stage("summary"),
        "index": _stage("index", "prepare"),
        "edges": _stage("edges", "prepare"),
        "train": _stage("train", "index"),
    }
    assert concurrency(dag) == {"prepare": 2, "summary": 2, "index": 2, "edges": 2, "train": 1}
