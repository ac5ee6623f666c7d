"""``models`` (the registry) and ``demo`` (baselines on the built-in dataset)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pandas as pd

from ..models import REGISTRY, spec
from ..models.capabilities import AnonymousScorer, Explainer, ItemStateScorer, StatefulScorer


#: the capabilities ``memrec models`` names, in this order (models/capabilities.py)
SHOWN_CAPABILITIES = (("stateful", StatefulScorer), ("item-state", ItemStateScorer),
                      ("sessions", AnonymousScorer), ("explains", Explainer))


@click.command()
@click.argument("name", required=False)
@click.option("--capabilities", is_flag=True, help="Also show what each model declares it can do.")
def models(name, capabilities):
    """List the registered models; with NAME, one model's hyper-parameters, training defaults
    and the shipped configs that set them."""
    if name is not None:
        _describe(name)
        return
    width = max(map(len, REGISTRY))
    for name, spec in REGISTRY.items():
        click.echo(f"{name:<{width}}  {spec.summary}")
        if capabilities:
            declared = [label for label, cls in SHOWN_CAPABILITIES if issubclass(spec.cls, cls)]
            if issubclass(spec.cls, Explainer):
                declared[-1] = f"explains {spec.cls.explains}s"
            plain = "knowledge graph" if spec.data == "knowledge_graph" else "users x items only"
            click.echo(f"{'':<{width}}  [{', '.join(declared) or plain}]")

def _describe(name: str) -> None:
    import inspect
    import tomllib

    from ..models import hyperparameters
    model_spec = spec(name)                       # an unknown name: the registry's one-line error
    click.echo(f"{name}: {model_spec.summary}")
    click.echo("hyper-parameters (--set model.KEY=VALUE):")
    for key, p in hyperparameters(name).items():
        kind = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
        default = "required" if p.default is inspect.Parameter.empty else repr(p.default)
        click.echo(f"  {key:<22} {kind:<14} {default}")
    if model_spec.train_defaults:
        click.echo("training defaults (--set train.KEY=VALUE): " +
                   ", ".join(f"{k}={v!r}" for k, v in model_spec.train_defaults.items()))
    configs = Path(__file__).resolve().parents[3] / "configs"
    shipped = [path for path in sorted(configs.glob("*.toml"))
               if tomllib.loads(path.read_text()).get("model", {}).get("name") == name]
    for path in shipped:
        settings = {k: v for k, v in tomllib.loads(path.read_text())["model"].items() if k != "name"}
        click.echo(f"shipped config configs/{path.name}: " + (", ".join(f"{k}={v!r}" for k, v in settings.items())
                                                              or "the defaults"))


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
    rows, reused = [], []
    for name in names.split(","):
        run = out / name
        results_file = run / "results.json"
        if results_file.exists():  # idempotent: a finished run is not trained again
            results = json.loads(results_file.read_text())
            reused.append(name)
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
    if reused:
        click.echo(f"reused the finished runs in {out}: {', '.join(reused)} (delete a folder to retrain it)", err=True)
    click.echo("Leave-one-out on the synthetic default dataset (full ranking; sampled: 100 negatives)")
    click.echo(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    memory_runs = [name for name in names.split(",") if issubclass(spec(name).cls, Explainer)]
    if memory_runs:
        _show_memory(out / memory_runs[-1])


def _show_memory(run: Path, user: str = "0", k: int = 5) -> None:
    """One user's top-k from a memory network, with the memory entries each score read."""
    from ..recommender import Recommender
    rec = Recommender.load(run)
    ids, scores = rec.recommend([user], k=k)
    click.echo(f"\n{rec.saved_.name} for user {user}: each recommendation with the memory "
               f"{rec.model_.explains}s it attended to")
    for rank, (item, score, why) in enumerate(zip(ids[0], scores[0], rec.explain(user, ids[0], top=3)), 1):
        read = ", ".join(f"{e.kind} {e.id} ({e.weight:.2f})" for e in why)
        click.echo(f"  {rank}. item {item}  score {score:.3f}  attended: {read}")
    click.echo(f"serve it with live memory: memrec serve {run}   (web page at http://127.0.0.1:8000/)")
