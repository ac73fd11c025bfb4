"""bench/formats.py's probe inside `genreq run`'s pool processes: CPU time by stage.

Put on PYTHONPATH (with BENCH_INRUN_PROBE_DIR naming a folder) by bench/formats.py only;
genreq itself never imports it. Python imports `sitecustomize` at start-up in every
process, so the worker's pool processes load this too: after the fork
(worker_process_init) it wraps the functions a task calls, and after every task it
writes this process's totals to BENCH_INRUN_PROBE_DIR/<pid>.json. Stages are exclusive
(a nested stage's time is not its caller's) and measured in this thread's CPU time
(time.thread_time), so another process sharing the core does not inflate them.
BENCH_INRUN_PROFILE=DIR also runs cProfile over the pool process (DIR/<pid>.prof), and
BENCH_INRUN_BASELINE undoes optimisations (see _baseline).
"""
from __future__ import annotations

import os

_DIR = os.environ.get("BENCH_INRUN_PROBE_DIR")


def _install() -> None:
    import contextlib
    import functools
    import json
    import time
    from pathlib import Path

    from celery import signals

    acc: dict[str, list[float]] = {}  # stage -> [cpu_s, wall_s, calls]
    stack: list[list] = []  # [stage, cpu_start, wall_start]
    state: dict = {}

    def enter(stage: str) -> None:
        cpu, wall = time.thread_time(), time.perf_counter()
        if stack:
            top = stack[-1]
            row = acc.setdefault(top[0], [0.0, 0.0, 0])
            row[0] += cpu - top[1]
            row[1] += wall - top[2]
        stack.append([stage, cpu, wall])

    def leave() -> None:
        cpu, wall = time.thread_time(), time.perf_counter()
        stage, cpu0, wall0 = stack.pop()
        row = acc.setdefault(stage, [0.0, 0.0, 0])
        row[0] += cpu - cpu0
        row[1] += wall - wall0
        row[2] += 1
        if stack:
            stack[-1][1], stack[-1][2] = cpu, wall

    def timed(stage: str, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            enter(stage)
            try:
                return fn(*args, **kwargs)
            finally:
                leave()
        return wrapper

    def timed_cm(stage: str, cm):
        @contextlib.contextmanager
        @functools.wraps(cm)
        def wrapper(*args, **kwargs):
            enter(stage)
            with cm(*args, **kwargs) as value:
                leave()
                try:
                    yield value
                finally:
                    enter(stage)  # the commit (or rollback) on the way out
            leave()
        return wrapper

    def write() -> None:
        now_cpu = time.process_time()
        out = {"pid": os.getpid(), "tasks": state.get("tasks", 0),
               "process_cpu_s": now_cpu - state["process_cpu0"],
               "process_cpu_first_task_s": state.get("process_cpu_first_task"),
               "task_tracks": state.get("task_tracks", []),
               "task_end_cpu_s": state.get("task_end_cpu_s", []),
               "first_task_stages": state.get("first_task_stages", {}),
               "stages": {k: {"cpu_s": v[0], "wall_s": v[1], "calls": v[2]}
                          for k, v in acc.items()}}
        path = Path(_DIR) / f"{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(out))
        os.replace(tmp, path)
        if state.get("profile") is not None:
            profiles = Path(os.environ["BENCH_INRUN_PROFILE"])
            profiles.mkdir(parents=True, exist_ok=True)
            state["profile"].dump_stats(str(profiles / f"{os.getpid()}.prof"))

    @signals.worker_process_init.connect(weak=False)
    def _start(**_kwargs) -> None:
        from genreq import audio, filetags, similarity
        from genreq.db import work
        from genreq.predict import Classifier
        from genreq.worker import tasks

        audio.duration_s = timed("probe", audio.duration_s)
        audio._read_soundfile = timed("decode", audio._read_soundfile)
        audio._read_av = timed("decode", audio._read_av)
        audio._resample = timed("resample", audio._resample)
        Classifier.chunks_of_excerpts = timed("features", Classifier.chunks_of_excerpts)
        Classifier.chunk_outputs = timed("model", Classifier.chunk_outputs)
        filetags.read = timed("file_tags", filetags.read)
        similarity.embedding_bytes = timed("embedding", similarity.embedding_bytes)
        for name in ("claim", "claim_batch", "claimable_among", "still_held",
                     "record_results", "record_failure", "record_skip", "release"):
            setattr(work, name, timed("db_statements", getattr(work, name)))
        tasks.transaction = timed_cm("db_transaction", tasks.transaction)
        state["process_cpu0"] = time.process_time()
        if os.environ.get("BENCH_INRUN_PROFILE"):
            import cProfile

            state["profile"] = cProfile.Profile()
            state["profile"].enable()

    @signals.task_prerun.connect(weak=False)
    def _prerun(args=(), **_kwargs) -> None:
        state.setdefault("process_cpu_first_task", time.process_time() - state["process_cpu0"])
        first = args[0] if args else None
        state.setdefault("task_tracks", []).append(len(first) if isinstance(first, list) else 1)
        enter("task_other")

    @signals.task_postrun.connect(weak=False)
    def _postrun(**_kwargs) -> None:
        while stack:
            leave()
        state["tasks"] = state.get("tasks", 0) + 1
        state.setdefault("task_end_cpu_s", []).append(time.process_time() - state["process_cpu0"])
        if state["tasks"] == 1:
            state["first_task_stages"] = {k: v[0] for k, v in acc.items()}
        if state.get("profile") is not None:
            state["profile"].disable()
        write()
        if state.get("profile") is not None:
            state["profile"].enable()


def _baseline() -> None:
    """BENCH_INRUN_BASELINE names optimisations to undo in this worker (comma-separated),
    so that one benchmark run measures genreq before and after them side by side."""
    from celery import signals

    undo = set(filter(None, os.environ.get("BENCH_INRUN_BASELINE", "").split(",")))

    @signals.celeryd_init.connect(weak=False)
    def _undo(**_kwargs) -> None:  # in the worker's main process, before the model loads
        from genreq.worker import tasks

        if "warm_up" in undo:
            tasks.warm_up = lambda _clf: None
        if "decoder" in undo:  # before the fork: the pool processes inherit it
            import legacy_decoder  # beside this file, on PYTHONPATH

            legacy_decoder.patch().start()


if _DIR:
    _install()
    _baseline()
