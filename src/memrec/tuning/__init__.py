"""Hyper-parameter search (``memrec tune``): search spaces (:mod:`.space`), the Optuna study
and the best trial's seeded retraining (:mod:`.study`), and its files (:mod:`.report`)."""
