"""Online pseudo-labeling inside one fit (``ConvNetClassifier(semi=...)``): FixMatch and FlexMatch.

Every step draws labeled and unlabeled images; the teacher (the EMA weights when ``ema`` is set,
else the current ones) labels a weakly augmented view of the unlabeled ones without gradients,
and the student trains the strongly augmented view towards those labels where the teacher is
confident enough. The step itself is :meth:`TorchFitMixin._train_step`, the supervised one.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pseudolabel.models.augment import strong_augment
from pseudolabel.models.training import labeled_loss

__all__ = ["SEMI_MODES", "SemiSupervisedMixin"]

SEMI_MODES = ("fixmatch", "flexmatch")


class SemiSupervisedMixin:
    """The semi-supervised epoch loop; needs :class:`~pseudolabel.models.training.TorchFitMixin`.

    Reads the estimator's ``semi``, ``semi_threshold``, ``semi_weight``, ``unlabeled_ratio``,
    ``batch_size``, ``augment`` and ``ema``.
    """

    def _fit_loop_semi(self, Xt, codes, weights, Xu) -> None:
        bs = min(self.batch_size, len(Xt))
        ubs = min(self.unlabeled_ratio * self.batch_size, len(Xu))
        # FlexMatch's learning status: the class each unlabeled image was last confidently given, or -1.
        self._status = torch.full((len(Xu),), -1, dtype=torch.long)
        try:
            self._fit_loop(math.ceil(len(Xu) / ubs),
                           lambda steps, opt, sched: self._run_epoch_semi(Xt, codes, weights, Xu, bs, ubs,
                                                                          steps, opt, sched))
        finally:
            del self._status

    def _class_thresholds(self) -> torch.Tensor:
        """Per-class confidence thresholds: fixed for FixMatch, FlexMatch's scaled ones otherwise."""
        tau = float(self.semi_threshold)
        if self.semi == "fixmatch":
            return torch.full((self.n_classes_,), tau, device=self.device_)
        status = self._status
        counts = torch.bincount(status[status >= 0], minlength=self.n_classes_).float()
        # With warm-up: classes are compared with the images nobody claimed yet, too.
        beta = counts / max(float(counts.max()), float((status < 0).sum()), 1.0)
        return (beta / (2.0 - beta) * tau).to(self.device_)

    @torch.no_grad()
    def _pseudo_labels(self, teacher, raw_u: torch.Tensor, uidx: torch.Tensor):
        """The teacher's classes for a weak view of the unlabeled batch, and the 0/1 mask of those
        confident enough to train on; records confident ones in FlexMatch's learning status."""
        teacher.eval()
        weak = teacher(self._normalize(raw_u, augment=True)).softmax(1)
        self.module_.train()
        conf, pseudo = weak.max(1)
        mask = (conf >= self._class_thresholds()[pseudo]).float()
        sure = conf.cpu() >= self.semi_threshold
        self._status[uidx[sure]] = pseudo.cpu()[sure]
        return pseudo, mask

    def _run_epoch_semi(self, Xt, codes, weights, Xu, bs, ubs, steps, opt, sched) -> dict:
        self.module_.train()
        perm = self._permutation(len(Xt), steps * bs)
        uperm = self._permutation(len(Xu), steps * ubs)
        teacher = self.ema_module_ if self.ema is not None else self.module_
        loss_sum = torch.zeros((), device=self.device_)
        correct = torch.zeros((), device=self.device_, dtype=torch.long)
        used = torch.zeros((), device=self.device_)
        seen = useen = 0
        ema_pairs = self._ema_pairs() if self.ema is not None else None
        for i in range(steps):
            idx, uidx = perm[i * bs:(i + 1) * bs], uperm[i * ubs:(i + 1) * ubs]
            raw_u = Xu[uidx].to(self.device_, non_blocking=True).float()
            pseudo, mask = self._pseudo_labels(teacher, raw_u, uidx)
            xb = self._normalize(Xt[idx], augment=self._augmenting())
            xs = self._normalize(strong_augment(raw_u, generator=self._gen))
            yb = codes[idx].to(self.device_, non_blocking=True)
            wb = None if weights is None else weights[idx].to(self.device_)
            loss, lab = self._train_step(opt, lambda: self._semi_step_loss(xb, yb, wb, xs, pseudo, mask))
            self._after_step(sched, ema_pairs)
            loss_sum += loss.detach() * len(idx)
            correct += (lab.argmax(1) == yb).sum()
            used += mask.sum()
            seen += len(idx)
            useen += len(uidx)
        return {"loss": float(loss_sum) / max(seen, 1), "train_accuracy": float(correct) / max(seen, 1),
                "unlabeled_used": float(used) / max(useen, 1), "samples": seen + useen}

    def _semi_step_loss(self, xb, yb, wb, xs, pseudo, mask):
        """(loss, labeled logits) of one step: labeled cross-entropy plus ``semi_weight`` times the
        masked cross-entropy of the strong views against the pseudo-labels, in one forward pass."""
        logits = self.module_(torch.cat([xb, xs]))
        lab, strong = logits[:len(xb)], logits[len(xb):]
        unlabeled_loss = (F.cross_entropy(strong, pseudo, reduction="none") * mask).mean()
        return labeled_loss(lab, yb, wb) + float(self.semi_weight) * unlabeled_loss, lab
