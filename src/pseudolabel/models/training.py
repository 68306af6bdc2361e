"""The supervised fit chain of a torch estimator: network, optimizer, schedule, epochs, steps, EMA.

``_initialize -> _fit_loop -> _run_epoch -> _train_step``, each small and overridable (skorch's
shape). :class:`TorchFitMixin` holds no parameters of its own: it reads the estimator's (``lr``,
``optimizer``, ``epochs``, ``ema``, ...) and the state ``fit`` set up (``module_``, ``device_``,
``_gen``, ``mean_``/``std_``).
"""
from __future__ import annotations

import copy
import math
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from torch import nn

from pseudolabel.callbacks import notify
from pseudolabel.exceptions import InputError
from pseudolabel.models.augment import random_affine
from pseudolabel.models.backbones import BACKBONES, backbone_network
from pseudolabel.models.nets import build_network

__all__ = ["AUTO_STRIDED_MIN_SIDE", "AUTO_SAMPLES", "AUTO_EPOCHS", "AUTO_AUGMENT_EPOCHS", "ARCH_COST",
           "EARLY_STOP_MIN_EPOCHS", "SIZED_WIDE_ROWS", "TorchFitMixin", "anneal", "one_cycle", "planned_epochs"]

# epochs="auto": about AUTO_SAMPLES training samples per fit, so a small data set gets many passes
# and a large one few, within AUTO_EPOCHS. 120,000 keeps the clean recipe's former budget on 60k
# MNIST (3 epochs of a fold's 45,000 rows, 40,500 after the validation split: ceil(2.96) = 3), so the
# large case takes no more time; 7,500 rows (6,750 trained) get 18 epochs, digits' 900 the cap
# of 30 (about the 200 steps the recipe gave them before).
AUTO_SAMPLES = 120_000
AUTO_EPOCHS = (3, 30)
# augment="auto" augments a fit of at least this many epochs. A short run learns more from the
# images as they are: on one fold of noisy MNIST training images 3 epochs scored 98.63 % without
# augmentation and 98.11 % with it (bench/explore_clean.py); on 7,500 MNIST training images
# (a slice of the training set, not the test set) 23 epochs of epochs="auto" scored 98.64 %
# with it and 98.48 % without. 8 lies between.
AUTO_AUGMENT_EPOCHS = 8
# A validation split is held out only from a fit of at least this many epochs (see _can_stop_early).
EARLY_STOP_MIN_EPOCHS = 5


# arch="sized": the wide network for a fit of at most this many images (16 pixels a side or more).
# On 7,500 MNIST training images (one fold of a 10,000-image slice of the training set; the test
# set was not read) the wide network scored 99.24 % after 9 epochs against the fast one's 98.64 %
# after 23, for about twice the time. Above 20,000 images the fast one's 3 epochs are kept (the
# 60k benchmark's time).
SIZED_WIDE_ROWS = 20_000
# For epochs="auto": how many of the fast network's samples one sample of another counts as. The
# wide one does about four times the multiply-adds (28x28: 29 M against 7.4 M) but is counted as
# two, so 7,500 images get the 9 epochs measured above rather than 5.
ARCH_COST = {"fast": 1.0, "wide": 2.0}


def planned_epochs(epochs, n_rows: int, cost: float = 1.0) -> int:
    """``epochs`` itself, or for ``"auto"`` the epochs that make about :data:`AUTO_SAMPLES` / ``cost``
    samples from ``n_rows`` rows per epoch, within :data:`AUTO_EPOCHS`."""
    if epochs != "auto":
        return int(epochs)
    lo, hi = AUTO_EPOCHS
    return int(min(hi, max(lo, math.ceil(AUTO_SAMPLES / cost / max(int(n_rows), 1)))))

# "auto" takes the strided network from this many pixels per side up: below, its early
# downsampling leaves too little of the image (8x8 digits learn better with the pooled "fast").
AUTO_STRIDED_MIN_SIDE = 16


def one_cycle(total_steps: int, warmup: float = 0.25, start: float = 0.1, end: float = 1e-3):
    """Learning-rate factor per step: linear warm-up from ``start`` to 1 over the first quarter, then
    linear decay to ``end``. Unlike torch's OneCycleLR it is defined for any number of steps, even 1."""
    up = max(1, int(total_steps * warmup))

    def factor(step: int) -> float:
        if step < up:
            return start + (1 - start) * step / up
        return max(end, 1 - (1 - end) * (step - up) / max(1, total_steps - up))

    return factor


def anneal(start_factor: float, start_step: int, end_step: int, end: float = 1e-3):
    """Learning-rate factor per step that falls linearly from ``start_factor`` at ``start_step``
    to ``end`` at ``end_step`` (early stopping's last epochs)."""
    span = max(1, end_step - start_step)

    def factor(step: int) -> float:
        return max(end, start_factor * (1 - (step - start_step) / span))

    return factor


def labeled_loss(logits, yb, wb):
    """Cross-entropy, weighted per sample when weights are given."""
    if wb is None:
        return F.cross_entropy(logits, yb)
    return (F.cross_entropy(logits, yb, reduction="none") * wb).sum() / wb.sum().clamp_min(1e-12)


class TorchFitMixin:
    """Network set-up, optimizer and schedule, the epoch loop, the training step and the EMA teacher."""

    # -- tensors ------------------------------------------------------------------------------
    def _set_norm_tensors(self) -> None:
        shape = (1, -1, 1, 1)
        self._mean_t = torch.as_tensor(self.mean_, device=self.device_).view(shape)
        self._std_t = torch.as_tensor(self.std_, device=self.device_).view(shape)

    def _normalize(self, xb: torch.Tensor, augment: bool = False) -> torch.Tensor:
        xb = xb.to(self.device_, non_blocking=True).float()
        if augment:  # on raw pixels, so the zero padding of shifted images is background
            xb = random_affine(xb, generator=self._gen)
        xb = (xb - self._mean_t) / self._std_t
        if self.channels_last and xb.shape[-1] > 1:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb

    # -- network and teacher ------------------------------------------------------------------
    def _initialize(self) -> None:
        in_ch = self.input_shape_[0]
        self.arch_ = self.arch
        if self.arch == "auto":
            self.arch_ = "strided" if min(self.input_shape_[1:]) >= AUTO_STRIDED_MIN_SIDE else "fast"
        elif self.arch == "sized":
            small = getattr(self, "n_fit_rows_", SIZED_WIDE_ROWS + 1) <= SIZED_WIDE_ROWS
            self.arch_ = "wide" if small and min(self.input_shape_[1:]) >= AUTO_STRIDED_MIN_SIDE else "fast"
        if self.module is not None:
            if isinstance(self.module, nn.Module):
                net = copy.deepcopy(self.module)
            elif callable(self.module):
                net = self.module(in_ch, self.n_classes_)
            else:
                raise InputError(
                    f"module must be a torch.nn.Module or a callable (in_channels, n_classes) -> Module; "
                    f"got {type(self.module).__name__}."
                )
        elif self.arch_ in BACKBONES:  # torchvision (models/backbones.py): weights loaded, input adapted
            net = backbone_network(self.arch_, self.n_classes_, self.weights, self.image_size, self.input_shape_[1:])
        else:
            net = build_network(self.arch_, in_ch, self.n_classes_, self.input_shape_[1:])
        net = net.to(self.device_)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.module_ = net
        self._init_ema()

    def _init_ema(self) -> None:
        if self.ema is None:
            self.__dict__.pop("ema_module_", None)
            return
        self.ema_module_ = copy.deepcopy(self.module_).eval()
        for p in self.ema_module_.parameters():
            p.requires_grad_(False)
        self.ema_steps_ = 0

    def _ema_pairs(self) -> tuple:
        """(averaged float tensors, live float tensors, averaged others, live others), built once
        per fit: state_dict() per step would cost more than the update itself on a small net."""
        live, avg = self.module_.state_dict(), self.ema_module_.state_dict()
        fl = [k for k, v in live.items() if v.dtype.is_floating_point]
        other = [k for k in live if k not in set(fl)]
        return [avg[k] for k in fl], [live[k] for k in fl], [avg[k] for k in other], [live[k] for k in other]

    @torch.no_grad()
    def _update_ema(self, pairs: tuple) -> None:
        """Move the averaged weights towards the current ones (BN statistics included)."""
        t = self.ema_steps_
        decay = min(float(self.ema), (1 + t) / (10 + t))
        avg_f, live_f, avg_o, live_o = pairs
        torch._foreach_lerp_(avg_f, live_f, 1.0 - decay)
        for a, b in zip(avg_o, live_o):
            a.copy_(b)
        self.ema_steps_ = t + 1

    # -- optimization -------------------------------------------------------------------------
    def _param_groups(self):
        """What the optimizer trains: every parameter here; a fine-tuning phase narrows it
        (backbones.FineTuneMixin: the head alone, then discriminative learning rates)."""
        return self.module_.parameters()

    def _loop_length(self) -> tuple[int, int]:
        """(epochs, min_steps) of one ``_fit_loop``; a fine-tuning phase has its own."""
        return self.epochs, self.min_steps

    def _make_optimizer(self, total_steps: int):
        params = self._param_groups()
        if self.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=self.lr, momentum=0.9, nesterov=True,
                                  weight_decay=self.weight_decay)
        elif self.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        sched = None
        if getattr(self, "arch_", self.arch) != "seed" or self.module is not None:
            sched = torch.optim.lr_scheduler.LambdaLR(opt, one_cycle(max(total_steps, 1)))
        return opt, sched

    def _fit_loop(self, steps_per_epoch: int, run_epoch: Callable) -> None:
        """Run ``epochs`` epochs (at least ``min_steps`` steps) of ``run_epoch(steps, opt, sched)``;
        after each, the record goes to ``history_`` and to every callback's ``on_epoch_end``.

        With a validation split (``validation_fraction``) each epoch is scored on it; after the
        warm-up, a plateau of the validation loss (``_EarlyStopping``) anneals the learning rate
        over a few more epochs, then training stops and the best epoch's weights are kept;
        with a ``budget`` (seconds) the first epoch's time caps the number of epochs (the
        learning-rate schedule is re-planned for that many)."""
        epochs, min_steps = self._loop_length()
        epochs = planned_epochs(epochs, steps_per_epoch * self.batch_size,
                                ARCH_COST.get(getattr(self, "arch_", self.arch), 1.0))
        total = max(epochs * steps_per_epoch, min_steps)
        n_epochs = math.ceil(total / steps_per_epoch) if total else 0
        opt, sched = self._make_optimizer(total)
        self.history_ = []
        self.planned_epochs_ = n_epochs  # before a budget trims them (augment="auto" reads it)
        watch = _EarlyStopping(self, n_epochs) if getattr(self, "_val", None) is not None else None
        step = epoch = 0
        t_loop = time.perf_counter()
        while epoch < n_epochs:
            steps = min(steps_per_epoch, total - step)
            t0 = time.perf_counter()
            record = run_epoch(steps, opt, sched)
            secs = time.perf_counter() - t0
            step += steps
            if watch is not None:
                record["val_accuracy"] = watch.score(epoch + 1)
            budget = getattr(self, "budget", None)
            if budget is not None and epoch == 0 and n_epochs > 1:
                affordable = max(1, int(float(budget) // max(time.perf_counter() - t_loop, 1e-9)))
                if affordable < n_epochs:
                    n_epochs, total = affordable, affordable * steps_per_epoch
                    if sched is not None:  # every parameter group (a fine-tuned backbone has three)
                        sched.lr_lambdas[:] = [one_cycle(max(total, 1))] * len(sched.lr_lambdas)
            record.update(epoch=epoch + 1, epochs=n_epochs, seconds=secs,
                          samples_per_s=record["samples"] / secs if secs > 0 else float("nan"))
            self.history_.append(record)
            if self.verbose:
                extra = f" unlabeled used {record['unlabeled_used']:.3f}" if "unlabeled_used" in record else ""
                extra += f" val {record['val_accuracy']:.4f}" if "val_accuracy" in record else ""
                print(
                    f"epoch {epoch + 1}/{n_epochs} loss {record['loss']:.4f} "
                    f"acc {record['train_accuracy']:.4f}{extra} {record['samples_per_s']:.0f} samples/s",
                    flush=True,
                )
            notify(self.callbacks, "on_epoch_end", self, record)
            epoch += 1
            if watch is not None and not watch.annealing and watch.exhausted(epoch):
                if sched is None:
                    break
                # A plateau at a high learning rate: anneal to the schedule's end over the next
                # `patience` epochs (the learning rate decides the last gains), then stop.
                watch.annealing = True
                n_epochs = min(n_epochs, epoch + watch.patience)
                total = min(total, n_epochs * steps_per_epoch)
                sched.lr_lambdas[:] = [anneal(f(step), step, total) for f in sched.lr_lambdas]
        if watch is not None:
            watch.keep_best(epoch)

    def _augmenting(self) -> bool:
        """Whether batches are augmented: augment="auto" does it when the fit plans at least
        :data:`AUTO_AUGMENT_EPOCHS` epochs of images at least 16 pixels a side."""
        if self.augment == "auto":
            return (getattr(self, "planned_epochs_", 0) >= AUTO_AUGMENT_EPOCHS
                    and min(self.input_shape_[1:]) >= AUTO_STRIDED_MIN_SIDE)
        return self.augment in ("affine", True)

    def _validation_split(self, codes: torch.Tensor):
        """(training rows, validation rows) of a ``validation_fraction`` split, stratified when every
        class has two rows; None when the split would hold no row or leave a class untrained."""
        frac = getattr(self, "validation_fraction", None)
        n = len(codes)
        n_val = int(round(float(frac or 0) * n))
        if not frac or n_val < 1 or n - n_val < 1:
            return None
        y = codes.numpy()
        counts = np.bincount(y)
        stratify = y if counts[counts > 0].min() >= 2 and n_val >= len(counts[counts > 0]) else None
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=self._gen))
        train, val = train_test_split(np.arange(n), test_size=n_val, stratify=stratify, random_state=seed)
        if len(np.unique(y[train])) < len(counts[counts > 0]):
            return None
        return np.sort(train), np.sort(val)

    @torch.no_grad()
    def _net_logits(self, Xt: torch.Tensor) -> torch.Tensor:
        """Logits of the predicting network (the EMA when there is one) for prepared images, in
        chunks of ``inference_batch_size``; the network is left in eval mode."""
        net = self.ema_module_ if self.ema is not None and hasattr(self, "ema_module_") else self.module_
        net.eval()
        out = []
        with torch.inference_mode():
            for start in range(0, len(Xt), self.inference_batch_size):
                xb = self._normalize(Xt[start:start + self.inference_batch_size])
                out.append(net(xb).float().cpu())
        return torch.cat(out) if out else torch.zeros((0, self.n_classes_))

    def _can_stop_early(self, n_rows: int) -> bool:
        """Whether a validation split is worth its rows: only a plan of at least
        :data:`EARLY_STOP_MIN_EPOCHS` epochs leaves room to stop after the warm-up and a patience of
        3 (60k MNIST's 3 epochs per fold train on every row, as before)."""
        frac = getattr(self, "validation_fraction", None)
        if not frac:
            return False
        epochs, min_steps = self._loop_length()
        n_train = max(1, n_rows - int(round(frac * n_rows)))
        steps = math.ceil(n_train / min(self.batch_size, n_train))
        cost = ARCH_COST.get(getattr(self, "arch_", self.arch), 1.0)
        planned = max(planned_epochs(epochs, steps * self.batch_size, cost) * steps, min_steps)
        return math.ceil(planned / steps) >= EARLY_STOP_MIN_EPOCHS

    def _fit_supervised(self, Xt: torch.Tensor, codes: torch.Tensor, weights: torch.Tensor | None) -> None:
        split = self._validation_split(codes) if self._can_stop_early(len(Xt)) else None
        if split is not None:
            train, val = (torch.from_numpy(a) for a in split)
            self._val = (Xt[val], codes[val])
            Xt, codes = Xt[train], codes[train]
            weights = None if weights is None else weights[train]
        bs = min(self.batch_size, len(Xt))
        try:
            self._fit_loop(math.ceil(len(Xt) / bs),
                           lambda steps, opt, sched: self._run_epoch(Xt, codes, weights, bs, steps, opt, sched))
        finally:
            self.__dict__.pop("_val", None)

    def _permutation(self, n: int, length: int) -> torch.Tensor:
        """At least ``length`` indices: fresh permutations of range(n), one after another."""
        reps = max(1, math.ceil(length / n))
        return torch.cat([torch.randperm(n, generator=self._gen) for _ in range(reps)])

    def _after_step(self, sched, ema_pairs) -> None:
        if sched is not None:
            sched.step()
        if ema_pairs is not None:
            self._update_ema(ema_pairs)

    def _run_epoch(self, Xt, codes, weights, bs, steps, opt, sched) -> dict:
        self.module_.train()
        perm = self._permutation(len(Xt), steps * bs)
        loss_sum = torch.zeros((), device=self.device_)
        correct = torch.zeros((), device=self.device_, dtype=torch.long)
        seen = 0
        ema_pairs = self._ema_pairs() if self.ema is not None else None
        for i in range(steps):
            idx = perm[i * bs:(i + 1) * bs]
            if len(idx) == 0:
                break
            xb = self._normalize(Xt[idx], augment=self._augmenting())
            yb = codes[idx].to(self.device_, non_blocking=True)
            wb = None if weights is None else weights[idx].to(self.device_)
            loss, logits = self._train_step(opt, lambda: self._labeled_step_loss(xb, yb, wb))
            self._after_step(sched, ema_pairs)
            loss_sum += loss.detach() * len(idx)
            correct += (logits.argmax(1) == yb).sum()
            seen += len(idx)
        return {"loss": float(loss_sum) / max(seen, 1), "train_accuracy": float(correct) / max(seen, 1),
                "samples": seen}

    def _labeled_step_loss(self, xb, yb, wb):
        """(loss, logits) of one labeled batch: the forward pass of a supervised step."""
        logits = self.module_(xb)
        return labeled_loss(logits, yb, wb), logits

    def _train_step(self, opt, compute_loss: Callable):
        """One optimizer step, the only one: supervised and semi-supervised epochs both call it.

        ``compute_loss()`` runs the forward pass and returns ``(loss, logits)``; the gradients are
        reset, the loss back-propagated and the optimizer stepped. Returns ``(loss, logits)``.
        Override this to change every step (gradient clipping, mixed precision, ...).
        """
        loss, logits = compute_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss, logits


class _EarlyStopping:
    """Scores each epoch of a fit on its validation split (``est._val``), remembers the best
    epoch's weights (the live network's and the EMA's), and puts them back at the end."""

    def __init__(self, est, planned: int):
        self.est = est
        self.best, self.best_loss, self.best_epoch, self.state = -1.0, math.inf, 0, None
        self.annealing = False
        # Not before the learning rate has warmed up (a quarter of the plan, as one_cycle does):
        # the loss of a small, noisy validation split jumps about while it rises. The patience
        # grows with the plan: a tenth of it, at least ``patience``.
        self.warmup = math.ceil(planned / 4)
        self.patience = max(int(getattr(est, "patience", 3)), math.ceil(planned / 10))

    def score(self, epoch: int) -> float:
        """The epoch's validation accuracy; the best epoch is the one of lowest validation loss
        (accuracy on a small split is often 1.0 early and would stop training at once)."""
        Xv, cv = self.est._val
        logits = self.est._net_logits(Xv)
        acc = float((logits.argmax(1) == cv).float().mean())
        loss = float(F.cross_entropy(logits, cv))
        self.last = (acc, epoch)
        # Only after the warm-up: while the learning rate rises the weights are not yet a model to keep.
        if epoch > self.warmup and loss < self.best_loss:
            self.best, self.best_loss, self.best_epoch = acc, loss, epoch
            nets = [self.est.module_] + ([self.est.ema_module_] if hasattr(self.est, "ema_module_") else [])
            self.state = [copy.deepcopy(n.state_dict()) for n in nets]
        return acc

    def exhausted(self, epoch: int) -> bool:
        return epoch > self.warmup and epoch - max(self.best_epoch, self.warmup) >= self.patience

    def keep_best(self, last_epoch: int) -> None:
        est = self.est
        if self.state is not None and self.best_epoch != last_epoch:
            nets = [est.module_] + ([est.ema_module_] if hasattr(est, "ema_module_") else [])
            for net, state in zip(nets, self.state):
                net.load_state_dict(state)
        if self.state is None:  # the fit ended within the warm-up: its last epoch is the model
            self.best, self.best_epoch = self.last
        est.validation_accuracy_, est.best_epoch_, est.stopped_epoch_ = self.best, self.best_epoch, last_epoch
