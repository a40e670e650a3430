from mesh.contract import Contract, Empty, task


class BenchTasksContract(Contract, plugin="bench_tasks"):
    noop = task(Empty, Empty, doc="Counts itself done.")
    sleep10 = task(Empty, Empty, doc="Sleeps 10 ms, then counts itself done.")
