from mesh.contract import Contract, Empty, task


class BenchTasksContract(Contract, plugin="bench_tasks"):
    noop = task(Empty, Empty, doc="Counts itself done.")
    sleep10 = task(Empty, Empty, doc="Sleeps 10 ms, then counts itself done.")
    keyed = task(Empty, Empty, max_attempts=5, backoff=0.2,
                 doc="Applies its idempotency key once; notes every run in $MESH_BENCH_KEYS.")
