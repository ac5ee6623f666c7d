"""One rank of the distributed tests (``tests/test_distributed.py`` starts it under torchrun):
trains each named model on the tests' synthetic split through the shared trainer, evaluates the
test part (sharded), and on rank 0 saves the weights and metrics to ``OUT/<model>.pt``.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/distributed_worker.py OUT EPOCHS MODEL...

With ``RUN_DIR`` set, each model trains into ``RUN_DIR/<model>`` (checkpoints, for the
world-size-change resume); ``OPTIMIZER`` names train.optimizer (default adam).
"""

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # tests.* from a plain script

from memrec import distributed  # noqa: E402
from memrec.evaluation import Evaluator  # noqa: E402
from tests.distributed_cases import fit, split  # noqa: E402


def main(out: str, epochs: int, names: list[str]) -> None:
    world = distributed.start("cpu")
    data = split()
    run_root = os.environ.get("RUN_DIR")
    for name in names:
        run_dir = None if run_root is None else Path(run_root) / name
        rec = fit(name, data, epochs, run_dir, optimizer=os.environ.get("OPTIMIZER", "adam"))
        metrics = Evaluator(data, "test").evaluate(rec.model_)
        if world.is_main:
            torch.save({"state": rec.model_.state_dict(), "metrics": metrics,
                        "world_size": world.size, "best_epoch": rec.result_.best_epoch},
                       Path(out) / f"{name}.pt")
    distributed.stop()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
