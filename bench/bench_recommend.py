"""Recommenders: LightGCN beside torch_geometric's, ALS on 1M interactions, top-20 serving.

1. LightGCN on online_retail (train before 2011-09-01; simulated shop without
   MARKETLOOP_DATA): ours and ``torch_geometric.nn.models.LightGCN`` with the same settings
   (64 dimensions, 3 layers, batch 16,384, Adam at 0.05, L2 1e-4, one uniform negative per
   bought pair, ``EPOCHS`` epochs, no early stopping), then ours with its default early
   stopping; training seconds and recall@20 on the test period (bought items excluded)
   through the same scoring code.
2. ALS (64 factors, 15 iterations) on 1,000,000 simulated order lines: our
   ``ALSRecommender.fit`` beside ``implicit``'s ``AlternatingLeastSquares.fit`` on the same
   matrix (the wrapper's cost: id mapping, co-purchase matrix, BM25 weights).
3. Serving: top-20 for one customer from the precomputed factors, bought items excluded,
   ``recommend_one`` beside implicit's ``recommend(userid, user_items[userid], N=20)``;
   per-call latency over 2,000 customers, median and p99.

Threads: 2 for torch and implicit, OpenBLAS pinned to 1. The load average is printed (a
shared 2-core machine moves every timing).

Run: MARKETLOOP_DATA=../shared/data .venv/bin/python bench/bench_recommend.py [lightgcn] [als]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import copy  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from marketloop.simulate import Market  # noqa: E402
from marketloop.strategy.recommend import (  # noqa: E402
    ALSRecommender,
    LightGCNRecommender,
    online_retail_interactions,
    shop_interactions,
)
from marketloop.strategy.recommend._metrics import ranking_metrics, relevant_sets  # noqa: E402
from marketloop.strategy.recommend._mf import weight_matrix  # noqa: E402
from marketloop.strategy.recommend.evaluate import time_split  # noqa: E402

EPOCHS = 12
SETTINGS = {"embedding_dim": 64, "n_layers": 3, "batch_size": 16_384, "learning_rate": 0.05,
            "l2": 1e-4}
THREADS = 2


def data_split():  # noqa: ANN201
    root = os.environ.get("MARKETLOOP_DATA")
    path = Path(root or "") / "online_retail" / "online_retail.csv.gz"
    if root and path.is_file():
        return "online_retail", time_split(online_retail_interactions(path), cut="2011-09-01")
    market = Market(n_customers=20_000, n_days=365, random_state=0)
    shop = market.simulate(("customers", "products", "orders", "order_lines"))
    cut = pd.Timestamp(market.start) + pd.Timedelta(days=270)
    return "simulated 20k", time_split(shop_interactions(shop), cut=cut)


def recall_of(model: LightGCNRecommender, relevant: dict[str, set[str]]) -> float:
    recs = model.recommend(list(relevant), k=20)
    return float(ranking_metrics(recs, relevant, k=20)["recall"].mean())


def pyg_lightgcn(model: LightGCNRecommender, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """torch_geometric's LightGCN trained like ours on ``model.user_items_``."""
    import torch
    from torch_geometric.nn.models import LightGCN

    torch.manual_seed(seed)
    X = model.user_items_.tocoo()
    n_users, n_items = X.shape
    users = torch.from_numpy(X.row.astype(np.int64))
    items = torch.from_numpy(X.col.astype(np.int64)) + n_users
    edge_index = torch.stack([torch.cat([users, items]), torch.cat([items, users])])
    net = LightGCN(n_users + n_items, SETTINGS["embedding_dim"], SETTINGS["n_layers"])
    opt = torch.optim.Adam(net.parameters(), lr=SETTINGS["learning_rate"])
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(EPOCHS):
        order = torch.from_numpy(rng.permutation(len(users)))
        for at in order.split(SETTINGS["batch_size"]):
            u, i = users[at], items[at]
            j = torch.from_numpy(rng.integers(n_items, size=len(at))) + n_users
            label = torch.stack([torch.cat([u, u]), torch.cat([i, j])])
            rank = net(edge_index, label)
            pos, neg = rank.chunk(2)
            loss = net.recommendation_loss(pos, neg, node_id=torch.cat([u, i, j]),
                                           lambda_reg=SETTINGS["l2"])
            opt.zero_grad()
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        emb = net.get_embedding(edge_index).numpy()
    return emb[:n_users], emb[n_users:], seconds


def lightgcn_section() -> None:
    import torch

    torch.set_num_threads(THREADS)
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # pay torch's lazy imports up front
    name, split = data_split()
    n_pairs = split.train.drop_duplicates(["customer_id", "product_id"]).shape[0]
    ours = LightGCNRecommender(**SETTINGS, max_epochs=EPOCHS, validation_share=0.0,
                               n_threads=THREADS, random_state=0)
    start = time.perf_counter()
    ours.fit(split.train)
    ours_s = time.perf_counter() - start
    relevant = relevant_sets(ours, split.test, where="bench")
    ours_r = recall_of(ours, relevant)
    peer = copy.deepcopy(ours)
    peer.user_factors_, peer.item_factors_, peer_s = pyg_lightgcn(ours, seed=0)
    peer_r = recall_of(peer, relevant)
    early = LightGCNRecommender(n_threads=THREADS, random_state=0)
    start = time.perf_counter()
    early.fit(split.train)
    early_s = time.perf_counter() - start
    print(f"lightgcn data={name} customers={len(ours.customer_ids_):,} "
          f"items={len(ours.product_ids_):,} pairs={n_pairs:,} epochs={EPOCHS} "
          f"evaluated={len(relevant):,}")
    print(f"  marketloop  train={ours_s:6.1f}s recall@20={ours_r:.4f}")
    print(f"  pyg         train={peer_s:6.1f}s recall@20={peer_r:.4f} "
          f"speedup={peer_s / ours_s:.2f}x")
    print(f"  marketloop early stopping: train={early_s:.1f}s epochs={early.n_epochs_} "
          f"(best {early.best_epoch_}) recall@20={recall_of(early, relevant):.4f}")


def als_section() -> None:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    market = Market(n_customers=150_000, n_days=365, random_state=1)
    shop = market.simulate(("customers", "products", "orders", "order_lines"), full_truth=False)
    data = shop_interactions(shop)
    while len(data) < 1_000_000:  # top up with a second seed's customers, renamed
        more = Market(n_customers=20_000, n_days=365, random_state=len(data)).simulate(
            ("customers", "products", "orders", "order_lines"), full_truth=False)
        extra = shop_interactions(more)
        extra["customer_id"] = "x" + str(len(data)) + extra["customer_id"]
        data = pd.concat([data, extra], ignore_index=True)
    data = data.iloc[:1_000_000]
    ours = ALSRecommender(factors=64, iterations=15, n_jobs=THREADS, random_state=0)
    start = time.perf_counter()
    ours.fit(data)
    ours_s = time.perf_counter() - start
    matrix = weight_matrix(ours.user_items_, "bm25")
    with threadpool_limits(1, "blas"):
        peer = AlternatingLeastSquares(factors=64, regularization=0.05, alpha=2.0,
                                       iterations=15, num_threads=THREADS, random_state=0)
        start = time.perf_counter()
        peer.fit(matrix, show_progress=False)
        peer_s = time.perf_counter() - start
    print(f"als interactions={len(data):,} customers={len(ours.customer_ids_):,} "
          f"items={len(ours.product_ids_):,} marketloop={ours_s:.2f}s implicit={peer_s:.2f}s "
          f"ratio={ours_s / peer_s:.2f}x")
    serving_section(ours, peer, matrix)


def serving_section(ours: ALSRecommender, peer: object, matrix: object) -> None:
    rng = np.random.default_rng(0)
    rows = rng.choice(len(ours.customer_ids_), size=2_000, replace=False)
    ids = ours.customer_ids_[rows]
    blocked = ours.blocked_mask(None)
    ours.recommend_one(ids[0], k=20, blocked=blocked)  # warm
    times = []
    for customer in ids:
        start = time.perf_counter()
        ours.recommend_one(customer, k=20, blocked=blocked)
        times.append(time.perf_counter() - start)
    peer_times = []
    for r in rows:
        start = time.perf_counter()
        peer.recommend(int(r), matrix[int(r)], N=20)  # type: ignore[attr-defined]
        peer_times.append(time.perf_counter() - start)
    ours_ms, peer_ms = np.array(times) * 1e3, np.array(peer_times) * 1e3
    print(f"serving top-20 customers={len(ids):,} items={len(ours.product_ids_):,} "
          f"marketloop p50={np.median(ours_ms):.3f}ms p99={np.percentile(ours_ms, 99):.3f}ms "
          f"implicit p50={np.median(peer_ms):.3f}ms p99={np.percentile(peer_ms, 99):.3f}ms")


def main() -> None:
    import sys

    parts = sys.argv[1:] or ["lightgcn", "als"]
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    if "lightgcn" in parts:
        lightgcn_section()
    if "als" in parts:
        als_section()


if __name__ == "__main__":
    main()
