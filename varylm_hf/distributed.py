"""Several processes (``torchrun`` / ``accelerate launch``): which contexts each evaluates, and gathering their rows.

Used by ``evaluate_model``, ``varylm score`` and ``varylm reproduce`` (``docs/distributed.md``);
training's data parallelism is the Trainer's own.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["Shard"]


class Shard:
    """Which contexts this process evaluates under ``accelerate launch`` / ``torchrun`` (one process: all).

    Passages are dealt round-robin over the processes (sorted passage ids), so the contexts of one
    passage stay together for prefix sharing; every context is sampled with its own seeded generator,
    so its rows do not depend on the process it lands on. Rows are gathered on every process and put
    back in the one-process order (mode, seed, context), so the main process writes what one process
    would have written.
    """

    def __init__(self, rank: int = 0, world: int = 1):
        self.rank, self.world = rank, world

    @classmethod
    def current(cls) -> "Shard":
        """The shard of this process (``WORLD_SIZE`` > 1 starts accelerate's process group)."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        import torch  # heavy: torch; the CLI imports Shard
        from accelerate import PartialState  # heavy: accelerate; the CLI imports Shard

        state = PartialState(cpu=not torch.cuda.is_available())  # gloo on CPU (accelerate's default skips it)
        return cls(state.process_index, state.num_processes)

    @property
    def is_main(self) -> bool:
        """The process that writes outputs and shows progress bars."""
        return self.rank == 0

    def mine(self, records: list[dict]) -> list[dict]:
        """This process's records (all of them with one process)."""
        if self.world == 1:
            return records
        passages = sorted({str(r.get("passage_id")) for r in records})
        owner = {p: i % self.world for i, p in enumerate(passages)}
        return [r for r in records if owner[str(r.get("passage_id"))] == self.rank]

    def gather(self, rows: list[dict], records: list[dict], seeds: Sequence[int]) -> list[dict]:
        """Every process's rows, in the order one process produces them."""
        if self.world == 1:
            return rows
        order = {r["id"]: i for i, r in enumerate(records)}
        mode_rank = {"sampled": 0, "exact": 1}
        seed_rank = {s: i for i, s in enumerate(seeds)}
        return self.gather_sorted(rows, key=lambda r: (mode_rank[r["mode"]], seed_rank.get(r["seed"], 0),
                                                       order[r["id"]]))

    def gather_sorted(self, items: list, key) -> list:
        """Every process's ``items`` (picklable), sorted by ``key`` (a stable sort; one process: as given)."""
        if self.world == 1:
            return items
        from accelerate.utils import gather_object  # heavy: accelerate; the CLI imports Shard

        gathered = gather_object([items])  # one list per process
        return sorted((item for part in gathered for item in part), key=key)

    def barrier(self) -> None:
        """Wait until the main process has written the run."""
        if self.world > 1:
            from accelerate import PartialState  # heavy: accelerate; the CLI imports Shard

            PartialState().wait_for_everyone()
