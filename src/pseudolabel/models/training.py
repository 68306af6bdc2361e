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

import torch
import torch.nn.functional as F
from torch import nn

from pseudolabel.callbacks import notify
from pseudolabel.exceptions import InputError
from pseudolabel.models.augment import random_affine
from pseudolabel.models.nets import build_network

__all__ = ["AUTO_STRIDED_MIN_SIDE", "TorchFitMixin", "one_cycle"]

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
    def _make_optimizer(self, total_steps: int):
        params = self.module_.parameters()
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
        after each, the record goes to ``history_`` and to every callback's ``on_epoch_end``."""
        total = max(self.epochs * steps_per_epoch, self.min_steps)
        n_epochs = math.ceil(total / steps_per_epoch) if total else 0
        opt, sched = self._make_optimizer(total)
        self.history_ = []
        step = 0
        for epoch in range(n_epochs):
            steps = min(steps_per_epoch, total - step)
            t0 = time.perf_counter()
            record = run_epoch(steps, opt, sched)
            secs = time.perf_counter() - t0
            step += steps
            record.update(epoch=epoch + 1, epochs=n_epochs, seconds=secs,
                          samples_per_s=record["samples"] / secs if secs > 0 else float("nan"))
            self.history_.append(record)
            if self.verbose:
                extra = f" unlabeled used {record['unlabeled_used']:.3f}" if "unlabeled_used" in record else ""
                print(
                    f"epoch {epoch + 1}/{n_epochs} loss {record['loss']:.4f} "
                    f"acc {record['train_accuracy']:.4f}{extra} {record['samples_per_s']:.0f} samples/s",
                    flush=True,
                )
            notify(self.callbacks, "on_epoch_end", self, record)

    def _fit_supervised(self, Xt: torch.Tensor, codes: torch.Tensor, weights: torch.Tensor | None) -> None:
        bs = min(self.batch_size, len(Xt))
        self._fit_loop(math.ceil(len(Xt) / bs),
                       lambda steps, opt, sched: self._run_epoch(Xt, codes, weights, bs, steps, opt, sched))

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
            xb = self._normalize(Xt[idx], augment=self.augment in ("affine", True))
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
