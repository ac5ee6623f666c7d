"""``models`` (the registry) and ``demo`` (baselines on the built-in dataset)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pandas as pd

from ..models import REGISTRY
from ..models.capabilities import AnonymousScorer, Explainer, ItemStateScorer, StatefulScorer


#: the capabilities ``memrec models`` names, in this order (models/capabilities.py)
SHOWN_CAPABILITIES = (("stateful", StatefulScorer), ("item-state", ItemStateScorer),
                      ("sessions", AnonymousScorer), ("explains", Explainer))


@click.command()
@click.option("--capabilities", is_flag=True, help="Also show what each model declares it can do.")
def models(capabilities):
    """List the registered models."""
    width = max(map(len, REGISTRY))
    for name, spec in REGISTRY.items():
        click.echo(f"{name:<{width}}  {spec.summary}")
        if capabilities:
            declared = [label for label, cls in SHOWN_CAPABILITIES if issubclass(spec.cls, cls)]
            if issubclass(spec.cls, Explainer):
                declared[-1] = f"explains {spec.cls.explains}s"
            plain = "knowledge graph" if spec.data == "knowledge_graph" else "users x items only"
            click.echo(f"{'':<{width}}  [{', '.join(declared) or plain}]")

# -- demo ---------------------------------------------------------------------------------------
#: settings that keep the demo to a minute or two on a laptop (the small synthetic data
#: converges fast at a larger learning rate)
DEMO_OVERRIDES = {"bprmf": ["train.epochs=20", "train.lr=0.01"],
                  "rumf": ["train.epochs=15", "train.lr=0.005"]}


@click.command()
@click.option("--out", default=Path("runs/demo"), type=click.Path(path_type=Path), show_default=True)
@click.option("--models", "names", default="pop,itemknn,rp3beta,ease,bprmf,rumf", show_default=True)
def demo(out, names):
    """Generate the default dataset, train baselines and a memory network (RUM-F) on it, print a
    results table. Each run folder serves: ``memrec serve OUT/rumf``."""
    from ..runs import train_run
    from ..training.config import load_config
    out.mkdir(parents=True, exist_ok=True)
    data_file = out / "synthetic.csv"
    if not data_file.exists():
        from ..data.synthetic import generate, write_csv
        write_csv(generate(), data_file)
    rows = []
    for name in names.split(","):
        run = out / name
        results_file = run / "results.json"
        if results_file.exists():  # idempotent: a finished run is not trained again
            results = json.loads(results_file.read_text())
        else:
            if run.exists():  # an interrupted earlier demo run: start it afresh
                import shutil
                shutil.rmtree(run)
            click.echo(f"training {name} ...", err=True)
            config = load_config(name, overrides=DEMO_OVERRIDES.get(name, []))
            results = train_run(config, data_file, run, progress=False, echo=lambda line: None)
        full = results["metrics"].get("full", {})
        sampled = results["metrics"].get("sampled", {})
        rows.append({"model": name, "HR@10": full.get("HR@10"), "NDCG@10": full.get("NDCG@10"),
                     "MRR@10": full.get("MRR@10"), "sampled HR@10": sampled.get("HR@10"),
                     "train s": results["train_seconds"]})
    click.echo("Leave-one-out on the synthetic default dataset (full ranking; sampled: 100 negatives)")
    click.echo(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    click.echo(f"serve one with live memory: memrec serve {out / names.split(',')[-1]}")
