"""What the review page shows of a queue besides its rows: filters and sort orders, progress, and
which human decisions the last run took in. Reads only, through LabelStore's public API."""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["SORTS", "SOURCE_FILTERS", "DECIDED_FILTERS", "QUEUE_JOB", "narrow", "run_feedback", "reviewer_summary"]

#: Sort orders of a queue page: the queue's own, or by confidence / score, either way.
SORTS = ("queue", "confidence", "-confidence", "score", "-score")
#: The current label's source ("none": no label yet).
SOURCE_FILTERS = ("given", "human", "pseudo", "corrected", "none")
DECIDED_FILTERS = ("undecided", "decided")
#: The job whose runs use a queue's decisions (the next ``clean --store`` redoes the suspects, the
#: next ``selftrain --store`` the pseudo labels and predictions); None: any job.
QUEUE_JOB = {"suspects": "clean", "audit": "selftrain", "active": "selftrain", "all": None}


def narrow(df: pd.DataFrame, *, source: str | None = None, decided: str | None = None,
           min_confidence: float | None = None, sort: str = "queue") -> pd.DataFrame:
    """The rows of a queue a page asked for: current source, decided or not (a human decision
    recorded after the queue entry was made), suggestion confidence at least ``min_confidence``
    (rows without a suggestion are left out then), in ``sort`` order (missing values last; ties
    keep the queue's order).

    Examples
    --------
    >>> narrow(store.queue("audit"), decided="undecided", sort="confidence")   # doctest: +SKIP
    """
    keep = np.ones(len(df), dtype=bool)
    if source is not None:
        keep &= (df["source"].fillna("none") == source).to_numpy()
    if decided is not None:
        keep &= df["reviewed"].to_numpy(dtype=bool) == (decided == "decided")
    if min_confidence is not None:
        conf = pd.to_numeric(df["confidence"]).to_numpy(dtype=float)
        keep &= (df["suggestion"].to_numpy() >= 0) & ~np.isnan(conf) & (np.nan_to_num(conf, nan=-1.0) >= min_confidence)
    out = df[keep]
    if sort != "queue":
        column = sort.lstrip("-")
        out = out.sort_values(column, ascending=not sort.startswith("-"), kind="stable", na_position="last")
    return out.reset_index(drop=True)


def run_feedback(human: pd.DataFrame, runs: pd.DataFrame, item_ids, job: str | None) -> dict:
    """How many human decisions on ``item_ids`` the latest run of ``job`` could use (recorded at or
    before its start) and how many came since (not yet used by any run).

    ``human`` is ``store.events(source="human")`` (effective decisions: undone ones are left out)
    and ``runs`` is ``store.runs()``, read once for all queues. Without a run of ``job`` the latest
    run of any job counts; without any run, every decision is "since".

    Examples
    --------
    >>> run_feedback(store.events(source="human"), store.runs(), ids, "selftrain")  # doctest: +SKIP
    {'run_id': 'selftrain-...', 'job': 'selftrain', 'run_at': '2024-...Z', 'used': 12, 'since': 3}
    """
    mine = human[human["item_id"].isin(list(item_ids))]
    pick = runs[runs["job"] == job] if job is not None else runs
    if not len(pick):
        pick = runs
    if not len(pick):
        return {"run_id": None, "job": None, "run_at": None, "used": 0, "since": int(len(mine))}
    last = pick.iloc[-1]  # runs() is in start order
    # Both timestamps are the store's ISO-8601 UTC strings of one width: they compare as text.
    used = int((mine["created_at"] <= last["created_at"]).sum())
    return {"run_id": str(last["run_id"]), "job": last["job"], "run_at": str(last["created_at"]),
            "used": used, "since": int(len(mine)) - used}


def reviewer_summary(human: pd.DataFrame, base: pd.DataFrame) -> tuple[list[dict], list[dict]]:
    """Who decided how many (``human``: the effective human events, oldest first), per source of
    the item's label before people (``base``: the latest given / pseudo / corrected event of each
    item; "none" without one), and for each pair of reviewers the items both decided and the share
    where their latest labels agree.

    Examples
    --------
    >>> people, pairs = reviewer_summary(store.events(source="human"),
    ...     store.events(source=("given", "pseudo", "corrected"), latest=True))   # doctest: +SKIP
    """
    base_source = dict(zip(base["item_id"].astype(int).tolist(), base["source"].tolist()))
    human = human.assign(who=[w if isinstance(w, str) else "" for w in human["who"]],
                         base=[base_source.get(int(i), "none") for i in human["item_id"]])
    people = []
    for who, rows in human.groupby("who", sort=True):
        people.append({"who": who or None, "decisions": int(len(rows)),
                       "items": int(rows["item_id"].nunique()),
                       "by_source": {k: int(v) for k, v in rows["base"].value_counts().sort_index().items()},
                       "last_at": rows["created_at"].iloc[-1]})
    latest = {who: dict(zip(rows["item_id"].astype(int), rows["label"].astype(int)))
              for who, rows in human.groupby("who", sort=True)}  # events are oldest first: last wins
    names, pairs = sorted(latest), []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = sorted(set(latest[a]) & set(latest[b]))
            if not shared:
                continue
            agree = sum(latest[a][k] == latest[b][k] for k in shared)
            pairs.append({"a": a or None, "b": b or None, "shared": len(shared), "agree": int(agree),
                          "agreement": agree / len(shared)})
    return people, pairs
