"""`pseudolabel ...`: parses arguments, calls the jobs, turns errors into one line and exit code 2."""
from __future__ import annotations

import contextlib
import functools
import re
import sys
from pathlib import Path

import click

from pseudolabel.exceptions import InputError, PseudolabelError
from pseudolabel.jobs.clean import report_lines, run_clean
from pseudolabel.jobs.outputs import store_errors
from pseudolabel.jobs.selftrain import run_selftrain
from pseudolabel.jobs.sweep import parse_int_axis, parse_modes, parse_threshold_axis, run_sweep
from pseudolabel.report import write_report
from pseudolabel.review import review_main
from pseudolabel.store import LabelStore
from pseudolabel.cli_scale import CLUSTER_HELP, pool_options, score as score_command
from pseudolabel.jobs.selftrain_pool import run_selftrain_pool

EXIT_USAGE = 2


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def friendly_errors(fn):
    """Bad input and missing data end as one line on stderr and exit 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PseudolabelError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            click.echo("interrupted: finished rounds are saved; continue with --resume", err=True)
            sys.exit(130)
        except MemoryError:
            _fail("out of memory; use fewer samples, a smaller --batch-size, or a machine with more memory.")

    return wrapper


def parse_thresholds(value: str | None) -> float | list[float] | None:
    """'0.99' -> 0.99; '0.99,0.95,0.9' -> one threshold per round (the last repeats); None -> the
    recipe's. Only parsed here: the values are checked with the rest of the config."""
    if value is None:
        return None
    try:
        parts = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise InputError(
            f"--threshold {value!r} is not a number or a comma-separated list of numbers; pass e.g. 0.99 or 0.99,0.95."
        ) from None
    if not parts:
        raise InputError("--threshold is empty; pass a value in [0, 1), e.g. 0.99.")
    return parts[0] if len(parts) == 1 else parts


@click.group()
@click.version_option(package_name="pseudolabel")
def main():
    """pseudolabel: self-training and label cleaning, with labels that say where they came from.

    \b
    Examples:
      pseudolabel demo
      pseudolabel selftrain --data mnist --labeled 1000 --threshold 0.99 --out runs/st
    """


def _image_options(fn):
    """--image-size and --skip-bad-images, for every command that loads --data."""
    fn = click.option("--skip-bad-images", "skip_bad_images", is_flag=True, default=None,
                      help="Leave out image files that cannot be decoded (a line names them) instead of "
                           "refusing the folder.")(fn)
    fn = click.option("--image-size", "image_size", type=int, nargs=2, default=None, metavar="H W",
                      help="Decode a folder's images at this height and width (default: the size they share, "
                           "else the most common one; a line says what was resized).")(fn)
    return fn


def _table_options(fn):
    """--label-column, --text-column, --model and the backbone's --weights, --freeze-epochs and
    --input-size, for every command that trains on --data."""
    fn = click.option("--model", "model_name", default=None, metavar="NAME",
                      help="logreg, hgb, forest, tfidf-logreg, cnn, a torchvision backbone (resnet18, ...), "
                           "embed:BACKBONE or module:package.module:Factory (default: cnn for images, hgb for a "
                           "table, tfidf-logreg for texts; docs/tables.md).")(fn)
    fn = click.option("--input-size", "input_size", type=int, default=None, metavar="PX",
                      help="With a backbone or embed:BACKBONE: the side images are resized to in front of the "
                           "network (default: the weights' own, 224; with --weights none the images' own, at "
                           "least 32; smaller is several times faster on a CPU).")(fn)
    fn = click.option("--freeze-epochs", "freeze_epochs", type=int, default=None, metavar="N",
                      help="With a backbone: epochs that train the new head alone before the whole network "
                           "(fastai's fine_tune; default 1).")(fn)
    fn = click.option("--weights", default=None, metavar="imagenet|PATH|none",
                      help="With a backbone or embed:BACKBONE: imagenet (torchvision's download and cache, the "
                           "default), a .pt/.pth state_dict of the same network, or none (random weights).")(fn)
    fn = click.option("--text-column", "text_column", default=None, metavar="COL",
                      help="With --label-column: the column of texts to learn from.")(fn)
    fn = click.option("--label-column", "label_column", default=None, metavar="COL",
                      help="--data is a .csv or .parquet table whose column COL holds the class names (an "
                           "empty cell: unlabeled); the other columns are the features.")(fn)
    return fn


class _Epochs(click.ParamType):
    """A number of epochs or "auto"."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or str(value).strip().lower() == "auto":
            return value if isinstance(value, int) else "auto"
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r} is neither a whole number of epochs nor 'auto'.", param, ctx)


EPOCHS = _Epochs()


def _selftrain_options(fn):
    options = [
        click.option("--data", required=True,
                     help="mnist, digits, an image folder, a .npz file, or a .csv/.parquet table with --label-column."),
        click.option("--labeled", type=int, default=None, help="Keep N labels, hide the rest (experiments)."),
        click.option("--threshold", default=None,
                     help="Confidence a prediction must exceed; a comma list gives one per round (default: the "
                          "recipe's 0.99 for the CNN and backbones, jobs/recipes.py says why; for other models "
                          "SelfTraining's criterion auto, docs/selftraining.md)."),
        click.option("--max-iter", type=int, default=None, help="Rounds of pseudo-labeling (default: the recipe's)."),
        click.option("--seed", type=int, default=None, show_default="0"),
        click.option("--epochs", type=EPOCHS, default=None,
                     help="Epochs per round, or 'auto' (sized by the data) (default: the recipe's; given alone, "
                          "exactly this many: the recipe's "
                          "--min-steps no longer stretches a round)."),
        click.option("--arch", type=click.Choice(["auto", "sized", "strided", "fast", "wide", "seed"]), default=None,
                     help="Built-in network (default: the recipe's)."),
        click.option("--recipe", type=click.Choice(["default", "frontier", "seed"]), default=None,
                     show_default="default",
                     help="default: warm-started, augmented, relabeling (about 5 minutes on MNIST, 2 cores); "
                          "frontier: the same, then a larger student model trained on its labels (about 10 "
                          "minutes); seed: the case study's protocol."),
        click.option("--device", default=None, show_default="auto", help="auto, cpu, cuda or cuda:N."),
        click.option("--relabel/--no-relabel", default=None, help="Relabel the whole pool each round."),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


@main.command()
@_selftrain_options
@_image_options
@_table_options
@click.option("--holdout", type=float, default=None,
              help="A table or texts without a test split: share of each class's labels held out to measure "
                   "accuracy, never trained on (default: 0.2; 0 trains on all).")
@click.option("--validation", type=float, default=None,
              help="Share of each class's given labels set aside (never trained on) to score every round; the "
                   "run keeps the round that scores best (default: 0, the last round).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run directory to create.")
@click.option("--resume", is_flag=True, help="Continue the killed run in --out from its last finished round.")
@click.option("--store", type=click.Path(path_type=Path), default=None,
              help="Label store to record into (default: OUT/labels.db). One that holds this data set is "
                   "where the run starts: its given and human labels, the rest unlabeled.")
@click.option("--min-steps", type=int, default=None,
              help="Optimizer steps per round at least (default: the recipe's; lower it for quick runs).")
@click.option("--semi", type=click.Choice(["fixmatch", "flexmatch"]), default=None,
              help="Also learn from the still unlabeled images online, every step: weak/strong views with a "
                   "confidence threshold (FixMatch), per-class thresholds (FlexMatch). Slower per round.")
@pool_options
@friendly_errors
def selftrain(data, labeled, threshold, max_iter, seed, epochs, arch, recipe, device, relabel, image_size,
              skip_bad_images, validation, out, resume, store, min_steps, semi, pool=None, pool_cap=None, cluster=None,
              **table):
    """Iterative confidence-based pseudo-labeling.

    Every run records its labels in OUT/labels.db (or --store): given, each round's pseudo labels
    with their confidence, and the final model's predictions of the unlabeled rest.

    \b
    Examples:
      pseudolabel selftrain --data mnist --labeled 1000 --threshold 0.99 --max-iter 5 --seed 0 --out runs/st
      # after a person labeled more in 'pseudolabel review runs/st/labels.db', redo it:
      pseudolabel store discard runs/st/labels.db --source pseudo
      pseudolabel selftrain --data mnist --store runs/st/labels.db --out runs/st2
    """
    config = dict(recipe=recipe, data=data, labeled=labeled, threshold=parse_thresholds(threshold),
                  max_iter=max_iter, seed=seed, epochs=epochs, arch=arch, device=device, relabel=relabel,
                  min_steps=min_steps, semi=semi, store=None if store is None else str(store),
                  image_size=image_size, skip_bad_images=skip_bad_images, validation=validation, **table)
    if pool is not None:  # a pool larger than memory, read in chunks (jobs/selftrain_pool.py)
        result = run_selftrain_pool({**config, "pool": pool, "pool_cap": pool_cap, "cluster": cluster}, out,
                                    resume=resume)
    else:
        result = run_selftrain(config, out, resume=resume)
    click.echo(f"termination: {result.termination}; run directory: {result.run.path}")
    if result.test_accuracy is not None:
        click.echo(f"test accuracy: {result.test_accuracy:.4f}")


_EPOCH = re.compile(r"epoch (\d+)/(\d+) ")


def _last_epochs_only(line: str) -> None:
    """Progress for a newcomer: a line per round or fold (its last epoch), not one per epoch."""
    m = _EPOCH.search(line)
    if m is None or m.group(1) == m.group(2):
        click.echo(line, err=True)


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True)
@friendly_errors
def demo(out):
    """Both jobs on scikit-learn's bundled digits, in well under a minute on 2 cores.

    Self-training from 100 labels (20 of them set aside to pick the round), then cleaning the
    labels of the training images after 5 %
    of them were corrupted on purpose. Results go to OUT/selftrain and OUT/clean.
    """
    target = out
    n = 1
    while target.exists():  # never overwrite an earlier demo
        n += 1
        target = out.with_name(f"{out.name}-{n}")
    # 100 labels, 20 of them set aside to pick the round (validation), never the test set.
    config = dict(recipe="default", data="digits", labeled=100, validation=0.2, threshold=0.99, max_iter=4,
                  seed=0, epochs=8, min_steps=300)
    result = run_selftrain(config, target / "selftrain", say=_last_epochs_only)
    base = result.history[0].get("test_accuracy")
    click.echo(
        f"digits, 100 labels (20 set aside to pick the round): supervised {base:.4f} -> self-trained "
        f"{result.test_accuracy:.4f} in {result.seconds:.0f} s"
    )
    cleaned = run_clean(dict(data="digits", noise=0.05, jobs=2, seed=0), target / "clean", say=_last_epochs_only)
    s = cleaned.summary
    d, t = s["detection"], s["test_accuracy"]
    click.echo(
        f"digits, {s['n_noisy']} of {s['n_samples']} labels corrupted: {s['n_flagged']} flagged (precision "
        f"{d['precision']:.2f}, recall {d['recall']:.2f}); labels correct {s['labels_correct_before']:.4f} -> "
        f"{s['labels_correct_after']:.4f}; test accuracy noisy {t['noisy']:.4f} -> cleaned {t['cleaned']:.4f} "
        f"in {cleaned.seconds:.0f} s"
    )
    click.echo(f"results: {target}/ (selftrain/: history.csv, labels.csv, labels.db, model.joblib; "
               "clean/: issues.csv, grid.png, labels.csv, labels.db)")
    click.echo(f"review the machine labels: pseudolabel review {result.store}")
    click.echo(f"review the suspects: pseudolabel review {cleaned.store}")
    click.echo(f"test accuracy: {result.test_accuracy:.4f}")


@main.command()
@click.option("--data", required=True,
              help="mnist, digits, an image folder, a CSV manifest, a .npz file, or a .csv/.parquet table with "
                   "--label-column.")
@_image_options
@_table_options
@click.option("--noise", type=float, default=None,
              help="Simulation: corrupt this share of the labels first and measure how well they are found.")
@click.option("--noise-kind", type=click.Choice(["symmetric", "pairs"]), default=None, show_default="symmetric",
              help="symmetric: a uniformly drawn other class; pairs: class c becomes c+1.")
@click.option("--folds", type=int, default=None, help="Cross-validation folds (default: the recipe's, 4).")
@click.option("--passes", type=str, default=None,
              help="Out-of-fold passes, or 'auto': each further one trains the folds again on the labels the "
                   "pass before fixed; auto adds a second pass when the first flags 20 % or more "
                   "(default: auto).")
@click.option("--method",
              type=click.Choice(["posterior", "self_confidence", "confident_joint", "normalized_margin",
                                 "disagreement"]),
              default=None, help="How suspects are ranked and counted (default: posterior).")
@click.option("--threshold", type=float, default=None,
              help="Confidence the prediction needs for an automatic relabel or drop (default: 0, every "
                   "flagged sample; a model trained on noisy labels is rarely confident).")
@click.option("--policy", type=click.Choice(["relabel", "drop", "prune", "review"]), default=None,
              show_default="relabel",
              help="What happens to a confident suspect; prune also drops every sample whose best label is "
                   "below --threshold; review leaves every label to a person.")
@click.option("--epochs", type=EPOCHS, default=None,
              help="Epochs per fold, or 'auto': sized by the data (about 120,000 samples, 3-30 epochs) with "
                   "early stopping on a validation split of each fold's training rows (default: auto).")
@click.option("--budget", default=None,
              help="Wall time the run may plan on, e.g. 10m or 90s: the folds' epochs are cut to fit the "
                   "speed measured in their first epoch (default: none).")
@click.option("--later-epochs", type=int, default=None,
              help="Epochs per fold from the second pass on (default: the recipe's).")
@click.option("--later-augment", type=click.Choice(["affine", "none"]), default=None,
              help="Augmentation of the folds from the second pass on (default: the recipe's).")
@click.option("--later-weighted/--later-unweighted", default=None,
              help="Weigh each label of a later pass by its posterior (default: weighted).")
@click.option("--average-passes/--last-pass", default=None,
              help="Rank with the mean of the passes' probabilities, or the last pass's (default: the mean).")
@click.option("--min-steps", type=int, default=None,
              help="At least this many training steps per fold, for small data sets (default: the recipe's).")
@click.option("--seed", type=int, default=None, show_default="0")
@click.option("--limit", type=int, default=None, help="Use the first N training samples (quick runs).")
@click.option("--jobs", type=int, default=None, show_default="1",
              help="Folds trained at once, in worker processes of one thread each (2 on a 2-core CPU).")
@click.option("--threads", type=int, default=None, show_default="1",
              help="torch threads of the main process; more only help on an otherwise idle machine.")
@click.option("--cluster", default=None, help="Train the folds as Ray tasks. " + CLUSTER_HELP)
@click.option("--device", default=None, show_default="auto", help="auto, cpu, cuda or cuda:N.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run directory to create.")
@click.option("--resume", is_flag=True, help="Continue the killed run in --out from its last finished fold.")
@click.option("--store", type=click.Path(path_type=Path), default=None,
              help="Label store to record into (default: OUT/labels.db).")
@friendly_errors
def clean(image_size, skip_bad_images, data, noise, noise_kind, folds, passes, method, threshold, policy, epochs,
          budget, later_epochs, later_augment, later_weighted, average_passes, min_steps, seed, limit, jobs, threads,
          device,
          out, resume, store, cluster=None, **table):
    """Find labels that are probably wrong (out-of-fold predictions), and fix or flag them.

    Writes issues.csv (most suspicious first), grid.png (up to 25 disagreements, most likely wrong
    first), labels.csv (given and new labels with their source) and labels.db (given labels,
    corrected ones, suggestions for 'pseudolabel review'). An image folder is never changed:
    decisions go to manifest.csv. With --noise it is a simulation whose last two lines are the
    detection scores and the test accuracy after training on noisy, cleaned and true labels.

    \b
    Examples:
      pseudolabel clean --data mnist --noise 0.1 --folds 5 --jobs 2 --out runs/clean
      pseudolabel clean --data mnist --folds 8 --cluster ray://head:10001 --out runs/clean-ray
      pseudolabel clean --data photos/ --policy review --out runs/photos-clean
      pseudolabel review runs/photos-clean/labels.db
    """
    config = dict(data=data, noise=noise, noise_kind=noise_kind, folds=folds, passes=passes, method=method,
                  threshold=threshold, policy=policy, epochs=epochs, budget=budget, later_epochs=later_epochs,
                  later_augment=later_augment, later_weighted=later_weighted, average_passes=average_passes,
                  min_steps=min_steps, seed=seed, limit=limit, jobs=jobs,
                  threads=threads, device=device, image_size=image_size, skip_bad_images=skip_bad_images,
                  cluster=cluster, **table)
    if store is not None:
        config["store"] = str(store)
    result = run_clean({k: v for k, v in config.items() if v is not None}, out, resume=resume)
    for line in report_lines(result):
        click.echo(line)


# -- more commands below --
# ------------------------------------------------------------------ the label store and its review page
@contextlib.contextmanager
def _open_store(db: Path):
    """The existing store at ``db``, read whole first (a damaged store is refused before any
    write); damage found later while reading it ends as one line too."""
    with store_errors(db):
        store = LabelStore(db, create=False)
        try:
            store.verify()
            yield store
        finally:
            store.close()


@main.command()
@click.argument("db", type=click.Path(path_type=Path))
@click.option("--images", default=None,
              help="An .npz/.npy file, an image folder or 'digits' (default: the one the store recorded).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but 127.0.0.1 is reachable from other machines.")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
@friendly_errors
def review(db, images, port, host, open_browser):
    """Review labels in a local web page; every decision is a human label event in DB.

    Prints the page's URL (with a per-launch token). Keys: 0-9 set one of the first ten classes,
    / types any class name (type-ahead), a accepts the suggestion, k keeps the current label, x is
    "none of these", z zooms, space ticks a card (shift-click a range; a decision applies to every
    ticked card), arrows move, u undoes your last decision. Table and text stores (a .csv or
    .parquet source) show each row's values instead of an image.

    \b
    Example:
      pseudolabel review runs/st/labels.db --port 8765
    """
    try:
        review_main(db, images=images, host=host, port=port, open_browser=open_browser)
    except KeyboardInterrupt:
        pass  # every decision is already in the store
    click.echo("review page stopped", err=True)


@main.group("store")
def store_group():
    """Look into and change a label store (labels.db) from the shell.

    \b
    Examples:
      pseudolabel store runs runs/st/labels.db
      pseudolabel store discard runs/st/labels.db --source pseudo
      pseudolabel store history runs/st/labels.db train/17
      pseudolabel store import runs/st/labels.db relabeled.csv --who ana
    """


@store_group.command("discard")
@click.argument("db", type=click.Path(path_type=Path))
@click.option("--source", type=click.Choice(["pseudo", "corrected"]), default="pseudo", show_default=True,
              help="Which machine labels to drop; given and human labels are never touched.")
@click.option("--run", "run_id", default=None, help="Only the labels of this run (see 'pseudolabel store runs').")
@click.option("--who", default=None, help="Who discards (kept in the store).")
@click.option("--note", default=None, help="Why (kept in the store).")
@friendly_errors
def store_discard(db, source, run_id, who, note):
    """Drop machine labels so a run can be redone after more human labels arrive.

    Nothing is deleted: the events stay in the history, marked discarded.

    \b
    Example:
      pseudolabel store discard runs/st/labels.db --source pseudo --run selftrain-20240101T120000-1a2b3c
    """
    with _open_store(db) as store:
        if run_id is not None:
            known = store.runs()["run_id"].tolist()
            if run_id not in known:
                shown = ", ".join(known[-5:]) or "none"
                raise InputError(f"no run {run_id!r} in {db} (runs: {shown}); see 'pseudolabel store runs {db}'.")
        n = store.discard(source, run_id, who=who, note=note)
    of_run = f" of run {run_id}" if run_id else ""
    click.echo(f"discarded {n} {source} labels{of_run} in {db}; given and human labels are kept")


@store_group.command("runs")
@click.argument("db", type=click.Path(path_type=Path))
@friendly_errors
def store_runs(db):
    """List the runs that wrote to DB, oldest first, with how many current labels each made.

    \b
    Example:
      pseudolabel store runs runs/st/labels.db
    """
    with _open_store(db) as store:
        runs = store.runs()
        current = store.current_labels()
    if runs.empty:
        click.echo(f"no runs in {db}")
        return
    counts = current.groupby(["run_id", "source"]).size()
    for row in runs.itertuples():
        mine = counts[row.run_id] if row.run_id in counts.index.get_level_values(0) else {}
        labels = ", ".join(f"{n} {src}" for src, n in dict(mine).items()) or "no current labels"
        click.echo(f"{row.run_id}  {row.job or '-'}  {row.created_at}  current labels: {labels}")


def _fmt(value, spec: str = "{}") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return spec.format(value)


@store_group.command("history")
@click.argument("db", type=click.Path(path_type=Path))
@click.argument("item")
@friendly_errors
def store_history(db, item):
    """Every label event of ITEM (a key such as train/17, or an item id), oldest first.

    \b
    Example:
      pseudolabel store history runs/st/labels.db train/17
    """
    with _open_store(db) as store:
        try:
            events = store.history(item)
        except InputError:
            if not item.isdigit():
                raise
            events = store.history(int(item))  # an item id
        names = store.classes
    rows = [["event", "when", "source", "label", "confidence", "round", "run", "model", "who", "status", "note"]]
    for e in events:
        label = e["label"]
        shown = "-" if e["source"] == "undo" else (
            f"{label} ({names[label]})" if 0 <= label < len(names) and names[label] != str(label) else str(label))
        rows.append([str(e["id"]), e["created_at"], e["source"], shown, _fmt(e["confidence"], "{:.4f}"),
                     _fmt(e["round"]), _fmt(e["run_id"]), _fmt(e["model_id"]), _fmt(e["who"]),
                     e["status"] if e["source"] != "undo" else f"undoes {e['undoes']}", _fmt(e["note"])])
    if len(rows) == 1:
        click.echo(f"{item}: no label events")
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())


@store_group.command("import")
@click.argument("db", type=click.Path(path_type=Path))
@click.argument("csv_path", metavar="CSV", type=click.Path(path_type=Path))
@click.option("--who", default=None, help="Who labeled them (kept with every event).")
@click.option("--note", default=None, help="A note kept with every event.")
@friendly_errors
def store_import(db, csv_path, who, note):
    """Import human labels from a CSV with columns key (or item, or path) and label.

    A label is a class index or a class name; rows with an empty label are skipped.

    \b
    Example:
      pseudolabel store import runs/st/labels.db relabeled.csv --who ana
    """
    with _open_store(db) as store:
        n = store.import_labels_csv(csv_path, "human", who=who, note=note)
    click.echo(f"imported {n} human labels from {csv_path} into {db}")


_EXPORT_NAMES = {"csv": "labels-export.csv", "parquet": "labels-export.parquet", "folder": "labels-manifest.csv"}


@main.command()
@click.argument("db", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(list(_EXPORT_NAMES)), default="csv", show_default=True,
              help="csv or parquet: every column; folder: an image-folder manifest (path, label, source, class).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="File to write (default: labels-export.csv, labels-export.parquet or labels-manifest.csv "
                   "next to DB).")
@click.option("--split", default=None, help="Only items of this split (e.g. train).")
@click.option("--all", "include_unlabeled", is_flag=True, help="Include items without a label (label -1).")
@click.option("--force", is_flag=True, help="Overwrite --out when it exists.")
@friendly_errors
def export(db, fmt, out, split, include_unlabeled, force):
    """Write the current label of every item, with where it came from, to a file.

    \b
    Examples:
      pseudolabel export runs/st/labels.db --format csv
      pseudolabel export runs/st/labels.db --format parquet --out labels.parquet
    """
    out = out if out is not None else db.parent / _EXPORT_NAMES[fmt]
    if out.exists() and not force:
        raise InputError(f"{out} exists already; pass --force to overwrite it or choose another --out.")
    with _open_store(db) as store:
        path = store.export(out, fmt, split=split, labeled_only=not include_unlabeled)
        counts = store.counts()
    shown = ", ".join(f"{n} {src}" for src, n in sorted(counts.items()))
    click.echo(f"wrote {path} ({shown})")



# ------------------------------------------------------------------------------ sweeps and reports
@main.command()
@click.option("--data", required=True, help="mnist, digits, an image folder, a .npz file, or a table with "
                                             "--label-column.")
@_image_options
@_table_options
@click.option("--labeled", required=True, help="Labeled sizes, comma-separated, e.g. 100,1000.")
@click.option("--threshold", default="0.99", show_default=True,
              help="Thresholds, comma-separated; '>' makes a per-round schedule (quote it in a shell): "
                   "'0.9,0.99>0.95'.")
@click.option("--seeds", type=int, default=1, show_default=True, help="Seeds 0..N-1 for every cell.")
@click.option("--max-iter", type=int, default=None, help="Rounds per run (default: the recipe's).")
@click.option("--epochs", type=int, default=None,
              help="Epochs per round (default: the recipe's; given alone, exactly this many).")
@click.option("--min-steps", type=int, default=None,
              help="Optimizer steps per round at least (default: the recipe's; 0 when --epochs is given).")
@click.option("--arch", type=click.Choice(["auto", "sized", "strided", "fast", "wide", "seed"]), default=None,
              help="Built-in network.")
@click.option("--recipe", type=click.Choice(["default", "frontier", "seed"]), default="default", show_default=True,
              help="default: warm-started, augmented, relabeling; seed: the case study's protocol.")
@click.option("--modes", default=None,
              help="Selection modes, comma-separated: keep, relabel, each optionally +quota=N "
                   "(default: the recipe's).")
@click.option("--reference/--no-reference", default=True, show_default=True,
              help="Also train on every label once per seed (the table's reference row).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--jobs", "--n-jobs", "n_jobs", type=int, default=1, show_default=True,
              help="Cells run at once, in worker processes of one thread each (-1: one per core; --n-jobs is "
                   "the same flag's old name).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Sweep directory.")
@click.option("--cluster", default=None,
              help="Run the cells as Ray tasks: local, auto or ray://HOST:PORT (every node must see --out).")
@friendly_errors
def sweep(data, image_size, skip_bad_images, labeled, threshold, seeds, max_iter, epochs, min_steps, arch, recipe,
          modes, reference, device, n_jobs, out, cluster=None, **table):
    """Self-training over a grid: labeled sizes x thresholds x modes x seeds, then the report.

    Every cell is an ordinary run directory in OUT/cells/. Run the same command again to continue
    a killed sweep: finished cells are skipped and never overwritten, unfinished ones resume. At
    the end OUT holds table.csv, table.md, plots/*.png and report.html.

    \b
    Examples:
      pseudolabel sweep --data mnist --labeled 100,1000 --threshold 0.9,0.95,0.99 --seeds 3 --out runs/sweep
      pseudolabel sweep --data digits --labeled 50,200 --threshold '0.95,0.99>0.9' --modes keep,relabel \\
          --max-iter 3 --jobs 2 --out runs/digits-sweep
    """
    if seeds < 1:
        raise InputError(f"--seeds {seeds} leaves the grid empty; give 1 or more.")
    config = {k: v for k, v in dict(data=data, max_iter=max_iter, epochs=epochs, min_steps=min_steps, arch=arch,
                                    device=device,
                                    image_size=image_size, skip_bad_images=skip_bad_images, **table).items()
              if v is not None}
    config.update(recipe=recipe, labeled=parse_int_axis(labeled, "labeled"), threshold=parse_threshold_axis(threshold),
                  seeds=list(range(seeds)), reference=reference)
    if modes is not None:
        config["modes"] = parse_modes(modes)
    try:
        result = run_sweep(config, out, n_jobs=n_jobs, cluster=cluster)
    except KeyboardInterrupt:
        click.echo("interrupted: finished cells are kept; run the same command again to continue the sweep",
                   err=True)
        sys.exit(130)
    click.echo(f"sweep finished: {len(result.cells)} cells in {result.run.path}; report: {result.report}")


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder (or .html file) for the report; default RUN itself. Needed for several runs.")
@friendly_errors
def report(runs, out):
    """Write report.html (self-contained, opens offline) and plots/*.png for runs.

    RUN is a selftrain, sweep or clean run directory. Several runs are shown side by side in one
    report: a combined table and overlaid curves.

    \b
    Examples:
      pseudolabel report runs/st
      pseudolabel report runs/sweep
      pseudolabel report runs/st runs/st-seed --out runs/compare
    """
    path = write_report(runs, out=out, say=lambda m: click.echo(m, err=True))
    click.echo(f"report: {path}")


# pseudolabel score (cli_scale.py): its errors end as one line too.
score_command.callback = friendly_errors(score_command.callback)
main.add_command(score_command)


if __name__ == "__main__":  # pragma: no cover
    main()
