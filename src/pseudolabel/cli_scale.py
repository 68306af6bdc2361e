"""`pseudolabel score`: a run's model over a pool larger than memory, here or on a Ray cluster.

Registered into :data:`pseudolabel.cli.main`; the work is :func:`pseudolabel.jobs.score.run_score`.
"""
from __future__ import annotations

from pathlib import Path

import click

from pseudolabel.jobs.score import run_score

CLUSTER_HELP = ("Run on Ray: local (a private runtime on this machine), auto (the cluster this machine "
                "joined with 'ray start'), or ray://HOST:PORT. Needs pip install 'pseudolabel[ray]'.")


@click.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--pool", required=True,
              help="The images to score: a .npy array (N, H, W[, C]), memory-mapped; an image folder; or a "
                   ".csv/.parquet manifest with a 'path' column.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The Parquet file to write.")
@click.option("--proba", is_flag=True, default=None, help="Also write every class's probability (p_<class>).")
@click.option("--chunk-size", type=int, default=None, show_default="4096", help="Images read and scored at once.")
@click.option("--cluster", default=None, help=CLUSTER_HELP)
@click.option("--workers", type=int, default=None,
              help="Scoring actors on the cluster (default: one per GPU, else one per CPU).")
@click.option("--device", default=None, show_default="auto", help="auto, cpu, cuda or cuda:N.")
@click.option("--image-size", "image_size", type=int, nargs=2, default=None, metavar="H W",
              help="Decode image files at this height and width (default: the first image's).")
@click.option("--resume", is_flag=True, help="Continue a killed job: chunks already in OUT.parts/ are kept.")
def score(run, pool, out, proba, chunk_size, cluster, workers, device, image_size, resume):
    """Score a pool of any size with a run's saved model, chunk by chunk (memory stays flat).

    Writes OUT with one row per item: item, label (the class name), confidence, and with --proba
    p_<class> for every class. Each chunk is kept in OUT.parts/ as it finishes; --resume continues
    a killed job without scoring those again.

    \b
    Examples:
      pseudolabel score runs/st --pool pool.npy --out scores.parquet
      pseudolabel score runs/st --pool scans/ --out scores.parquet --cluster local --proba
      pseudolabel score runs/st --pool pool.npy --out scores.parquet --cluster ray://head:10001 --resume
    """
    options = dict(run=str(run), pool=str(pool), proba=proba, chunk_size=chunk_size, cluster=cluster,
                   workers=workers, device=device, image_size=image_size)
    result = run_score(options, out, resume=resume)
    click.echo(f"scored {result.n_items} items ({result.n_scored} of {result.n_chunks} chunks now) "
               f"in {result.seconds:.1f} s: {result.path}")


def pool_options(fn):
    """--pool, --pool-cap and --cluster for `pseudolabel selftrain` (jobs/selftrain_pool.py)."""
    fn = click.option("--cluster", default=None, help="With --pool: score the pool on Ray. " + CLUSTER_HELP)(fn)
    fn = click.option("--pool-cap", "pool_cap", type=int, default=None, show_default="50000",
                      help="With --pool: train each round on at most this many accepted pseudo labels (a "
                           "seeded random sample when more are accepted).")(fn)
    fn = click.option("--pool", default=None,
                      help="Unlabeled images from a separate source, read in chunks (a .npy array, an image "
                           "folder, a .csv/.parquet manifest): pools larger than memory. --data then gives "
                           "the labeled images. Pass it again with --resume.")(fn)
    return fn
