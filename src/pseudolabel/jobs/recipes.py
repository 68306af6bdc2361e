"""Recipes by name: the values a job starts from before the user's options are applied.

A recipe is a flat dict of job settings and model (``ConvNetClassifier``) parameters; the typed
configs in :mod:`pseudolabel.jobs.config` resolve one by name, so ``run_selftrain`` from Python
picks a recipe the way ``pseudolabel selftrain --recipe`` does. Each recipe says below how it was
chosen (always on a development split of the training data, never on test labels).

The default threshold: ``SelfTraining`` defaults to 0.95, the case study's example ("confidence
above a certain threshold (e.g. 95%)") and a fair start for any probabilistic classifier. The CNN
recipes here use 0.99: their model predicts with an average of its weights (EMA) after augmented
training, so its confidences run high, and the default recipe met its target with 0.99
(docs/benchmarks.md, 98.14 % at 1000 labels); no other value was measured for it. The command
line's ``--threshold`` defaults to the recipe's value, so there is one default per recipe and it
is written here.
"""
from __future__ import annotations

# The default recipe (see docs/benchmarks.md, bench_clean): the pooled batch-norm CNN ("fast"), three
# epochs per fold, no augmentation, predictions from an average of its weights (EMA); 4 folds, so
# two workers on a 2-core CPU finish in two even waves (5 folds leave a core idle for a third of the
# pass). The simulation's test-accuracy models train for eval_epochs (2), so a 60k run stays in 10
# minutes. Chosen on one fold of noisy MNIST training images scored against their true labels
# (bench/explore_clean.py; the test set is not read): in a short training run augmentation costs
# more accuracy than the memorized noise it prevents (98.63 % without it against 98.11 % with it,
# the strided network 98.35 %).
# min_steps gives small data sets (digits) enough updates.
# Later passes (passes="auto" runs a second one when the first flags >= 20 %, e.g. at 40 % noise)
# train their folds longer and with augmentation: their labels are mostly right, so the longer
# run learns the images rather than the noise. On a development noise draw (MNIST, 40 %, seed 1;
# bench/explore_posterior.py, training labels only) 8 epochs with augmentation took the second
# pass's held-out accuracy against the true labels to 98.54 % and labels correct after fixing
# from 98.79 % (3 epochs, no augmentation) to 98.86 %, for 2.2x the pass's time; a third pass
# lowered them (98.08 % / 98.58 %): trained on its own family's mistakes the model repeats them.
# later_weighted and average_passes: see later_pass_labels and combine_passes.
# Sized by the data (issue 13): epochs="auto" plans about 120,000 samples per fold (3 epochs of
# 60k MNIST's folds, as before; 18 of 7,500 rows; up to 30), 10 % of each fold's training rows are
# held out to stop early (after the warm-up, patience 3 or a tenth of the plan, then the
# learning rate anneals) and to report each fold's
# validation accuracy, augment="auto" augments the long runs only, and arch="sized" trains the wide
# network on up to 20,000 images (9 epochs of 7,500), the fast one above (models/training.py says
# how each was chosen, on MNIST training images). --budget cuts the epochs to a wall time.
CLEAN_DEFAULTS = dict(
    folds=4, passes="auto", method="posterior", threshold=0.0, policy="relabel", noise=None,
    noise_kind="symmetric", limit=None, seed=0, jobs=1, threads=1, arch="sized", epochs="auto", eval_epochs=2,
    min_steps=200, batch_size=128, lr=3e-3, augment="auto", ema=0.999, device="auto",
    validation_fraction=0.1, patience=3,
    later_epochs=8, later_augment="affine", later_weighted=True, average_passes=True,
)

# The default recipe: a strided batch-norm CNN (arch "auto": the pooled one for images under 16x16)
# with batch augmentation whose predictions come from an exponential moving average of its weights,
# warm-started from round to round (two epochs, at least 600 optimizer steps each), every round
# relabels the whole pool so early mistakes are not frozen in, and the given labels stay half of
# the training rows so easy pseudo-labels do not drown them. Chosen on a development split of the
# training set (bench/explore_recipes.py; the choices and what they bought are in
# docs/benchmarks.md), never on test labels.
DEFAULTS = dict(
    threshold=0.99, max_iter=4, arch="auto", epochs=2, min_steps=600, batch_size=128, lr=3e-3,
    augment="affine", ema=0.999, warm_start=True, relabel=True, class_quota=None, given_share=0.5,
    device="auto",
)
# With every label given there is nothing to pseudo-label: the frontier recipe's student network
# (below), trained on all labels for 20 epochs (bench/bench_frontier.py's all-labels row). On the
# development split (bench/explore_recipes.py --labeled 50000, test set unread) 20 epochs scored
# 99.41 % against 12 epochs' 99.32 %; 20 epochs take about 10 minutes on 2 cores.
FULL_LABELS = dict(max_iter=0, arch="fast", epochs=20)
# The case study's protocol: its CNN, Adam 1e-3, batch 64, 10 epochs from scratch each round.
SEED_PROTOCOL = dict(
    threshold=0.99, max_iter=10, arch="seed", epochs=10, min_steps=0, batch_size=64, lr=1e-3,
    augment=None, warm_start=False, relabel=False, class_quota=None, optimizer="adam", weight_decay=0.0,
    channels_last=False, given_share=None, ema=None, device="auto",
)

# The default recipe's rounds, then a student: the pooled network ("fast", more accurate than the
# strided one and twice as slow) trained from scratch for 6 epochs on the last round's labels. The
# idea: with 1000 labels the rounds' pseudo-labels were 99.8 % right while the strided model scored
# about 98 % on the development split. Measured (bench/bench_frontier.py, docs/benchmarks.md): the
# student moved MNIST test accuracy by +0.18, -0.02 and -0.05 points over 3 seeds at 1000 labels
# for 300-420 s more, so the default recipe stays the recommended one; this is kept to build on.
FRONTIER = {**DEFAULTS, "final_epochs": 6, "final_arch": "fast"}
# Recipes by name (`pseudolabel selftrain --recipe NAME`).
RECIPES = {"default": DEFAULTS, "seed": SEED_PROTOCOL, "frontier": FRONTIER}
# The clean job has one recipe by name.
CLEAN_RECIPES = {"default": CLEAN_DEFAULTS}
# The score job (`pseudolabel score RUN --pool SOURCE`): chunks of 4096 images (see
# pseudolabel.pools.DEFAULT_CHUNK_SIZE: fixed costs per chunk vanish, memory stays flat), the
# class names and confidence only (per-class probabilities are ten times the file: --proba).
SCORE_DEFAULTS = dict(chunk_size=4096, proba=False, cluster=None, workers=None, device="auto")
SCORE_RECIPES = {"default": SCORE_DEFAULTS}
