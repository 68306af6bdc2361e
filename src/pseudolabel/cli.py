"""`pseudolabel ...`: parses arguments, calls the jobs, turns errors into one line and exit code 2."""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from pseudolabel.exceptions import PseudolabelError

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


def parse_thresholds(value: str) -> float | list[float]:
    """'0.99' -> 0.99; '0.99,0.95,0.9' -> one threshold per round (the last repeats)."""
    from pseudolabel.selection import check_schedule

    try:
        parts = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number or a comma-separated list of numbers, e.g. 0.99 or 0.99,0.95.")
    if not parts:
        raise click.BadParameter("give a threshold in [0, 1), e.g. 0.99.")
    schedule = parts[0] if len(parts) == 1 else parts
    try:
        check_schedule(schedule)
    except PseudolabelError as exc:
        raise click.BadParameter(str(exc))
    return schedule


@click.group()
@click.version_option(package_name="pseudolabel")
def main():
    """pseudolabel: self-training and label cleaning, with labels that say where they came from.

    \b
    Examples:
      pseudolabel demo
      pseudolabel selftrain --data mnist --labeled 1000 --threshold 0.99 --out runs/st
    """


def _selftrain_options(fn):
    options = [
        click.option("--data", required=True, help="mnist, digits, an image folder, or a .npz file."),
        click.option("--labeled", type=int, default=None, help="Keep N labels, hide the rest (experiments)."),
        click.option("--threshold", default="0.99", show_default=True,
                     help="Confidence a prediction must exceed; a comma list gives one per round."),
        click.option("--max-iter", type=int, default=5, show_default=True, help="Rounds of pseudo-labeling."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--epochs", type=int, default=None, help="Epochs per round (default: the recipe's)."),
        click.option("--arch", type=click.Choice(["fast", "wide", "seed"]), default=None,
                     help="Built-in network (default: fast)."),
        click.option("--recipe", type=click.Choice(["default", "seed"]), default="default", show_default=True,
                     help="default: warm-started, augmented, relabeling; seed: the case study's protocol."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--relabel/--no-relabel", default=None, help="Relabel the whole pool each round."),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _recipe_config(recipe, **given) -> dict:
    from pseudolabel.jobs.selftrain import DEFAULTS, SEED_PROTOCOL

    config = dict(SEED_PROTOCOL if recipe == "seed" else DEFAULTS)
    config.update({k: v for k, v in given.items() if v is not None})
    return config


@main.command()
@_selftrain_options
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run directory to create.")
@click.option("--resume", is_flag=True, help="Continue the killed run in --out from its last finished round.")
@friendly_errors
def selftrain(data, labeled, threshold, max_iter, seed, epochs, arch, recipe, device, relabel, out, resume):
    """Iterative confidence-based pseudo-labeling.

    \b
    Example:
      pseudolabel selftrain --data mnist --labeled 1000 --threshold 0.99 --max-iter 5 --seed 0 --out runs/st
    """
    from pseudolabel.jobs.selftrain import run_selftrain

    config = _recipe_config(recipe, data=data, labeled=labeled, threshold=parse_thresholds(threshold),
                            max_iter=max_iter, seed=seed, epochs=epochs, arch=arch, device=device, relabel=relabel)
    config["recipe"] = recipe
    result = run_selftrain(config, out, resume=resume)
    click.echo(f"termination: {result.termination}; run directory: {result.run.path}")
    if result.test_accuracy is not None:
        click.echo(f"test accuracy: {result.test_accuracy:.4f}")


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True)
@friendly_errors
def demo(out):
    """Self-training on scikit-learn's bundled digits (5 % labels), in well under a minute."""
    from pseudolabel.jobs.selftrain import run_selftrain

    target = out
    n = 1
    while target.exists():  # never overwrite an earlier demo
        n += 1
        target = out.with_name(f"{out.name}-{n}")
    config = _recipe_config("default", data="digits", labeled=70, threshold=0.95, max_iter=4, seed=0,
                            epochs=8, min_steps=300)
    result = run_selftrain(config, target)
    base = result.history[0].get("test_accuracy")
    click.echo(
        f"digits, 70 labels: supervised {base:.4f} -> self-trained {result.test_accuracy:.4f} "
        f"in {result.seconds:.0f} s"
    )
    click.echo(f"results: {result.run.path}/ (history.csv, labels.csv, model.joblib)")
    click.echo(f"test accuracy: {result.test_accuracy:.4f}")


# -- more commands below --


if __name__ == "__main__":  # pragma: no cover
    main()
