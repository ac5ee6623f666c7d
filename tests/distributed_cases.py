"""The models, data and settings the distributed tests train, shared by the test module and the
ranks it starts (``tests/distributed_worker.py``)."""

from memrec.data.splits import leave_one_out
from memrec.data.synthetic import SynthConfig, generate
from memrec.recommender import Recommender

#: several batches an epoch, the same global batch for 1 and 2 processes; dropout off (its masks
#: are drawn per rank, so they differ from one process's)
TRAIN = {"batch_size": 64, "patience": 0, "lr": 0.01, "n_negatives": 2}
SMALL = {"bprmf": {"dim": 8}, "gmf": {"dim": 8}, "cmn": {"dim": 8, "hops": 2}, "fpmc": {"dim": 8},
         "gru4rec": {"dim": 8, "hidden": 8, "dropout": 0.0}, "sasrec": {"dim": 8, "max_len": 5, "dropout": 0.0},
         "rumi": {"dim": 8, "slots": 4}, "rumf": {"dim": 8, "slots": 4}, "stamp": {"dim": 8},
         "stmp": {"dim": 8}, "mars": {"dim": 8, "max_history": 10}, "dmn": {"dim": 8},
         "ksr": {"hidden": 16, "out_dim": 8, "kg_dim": 8, "dim": 8, "kg": None,
                 "dropout": 0.0}}
SMALL_TRAIN = {"ksr": {"pretrain_epochs": 0}}


def split():
    return leave_one_out(generate(SynthConfig(n_users=60, n_items=80, mean_length=12, seed=5)))


def fit(name, data, epochs, run_dir=None, resume=False, optimizer="adam") -> Recommender:
    rec = Recommender(name, train={**TRAIN, **SMALL_TRAIN.get(name, {}), "epochs": epochs,
                                   "optimizer": optimizer}, **SMALL.get(name, {}))
    return rec.fit_split(data, run_dir=run_dir, resume=resume, progress=False, echo=lambda line: None)
