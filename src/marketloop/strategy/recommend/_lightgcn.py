"""LightGCN: a graph neural network on the customer-product graph, in PyTorch on CPU."""

from __future__ import annotations

import time
import warnings
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from marketloop._validation import check_in_range
from marketloop.exceptions import ConfigError, describe
from marketloop.strategy.recommend._mf import _FactorModel

#: The validation metric's cut-off: early stopping watches recall at this many items.
VALIDATION_K = 20


class LightGCNRecommender(_FactorModel):
    """LightGCN (He et al. 2020) trained with BPR loss and early stopping.

    Every customer and product has an ego embedding ``e^(0)``. Layer ``l + 1`` averages the
    neighbours of layer ``l`` over the symmetrically normalised bipartite graph,
    ``E^(l+1) = D^-1/2 A D^-1/2 E^(l)`` (no weights, no non-linearity); the final embedding is
    the mean of layers 0 to ``n_layers``, and a customer's score for a product is the dot
    product of their final embeddings. The loss over mini-batches of sampled triples (a
    customer ``u``, a product bought ``i``, a product not bought ``j``) is
    ``-ln sigmoid(s_ui - s_uj) + l2 (|e_u^(0)|^2 + |e_i^(0)|^2 + |e_j^(0)|^2) / 2``, minimised
    by Adam.

    Early stopping: the interactions in the last ``validation_share`` of the training time
    span (or of each customer's own history, ``validation_by="customer"``) are held out;
    after each epoch the model trained on the earlier part is scored by recall@20 of the
    held-out products (those not bought before) and training stops after ``patience``
    epochs without a better one. The best epoch's ego embeddings are then
    propagated over the graph of *all* training interactions, so the latest purchases shape
    the recommendations; nodes first seen in the held-out period start from zero and take
    their embedding from their neighbours.

    Parameters
    ----------
    embedding_dim : int, default=64
        Length of the embeddings.
    n_layers : int, default=3
        Propagation layers ``K``.
    learning_rate : float, default=0.05
        Adam's step; large, with large batches, so that a CPU run converges in tens of
        epochs (online retail: validation recall peaks near epoch 12).
    l2 : float, default=1e-4
        Weight of the L2 penalty on the ego embeddings of each triple.
    batch_size : int, default=16384
        Triples per step; each epoch samples one triple per bought (customer, product) pair.
        Every step propagates the whole graph, so fewer, larger steps are faster on CPU.
    max_epochs : int, default=40
        Upper bound on epochs.
    patience : int, default=3
        Epochs without a better validation recall before stopping.
    validation_share : float, default=0.1
        Share of the training time span, at its end, held out for early stopping; 0 trains
        ``max_epochs`` epochs on everything.
    validation_by : {"time", "customer"}, default="time"
        Hold out the end of the shared time span, or the end of each customer's history
        (when customers are active in different periods, as on MovieLens; match the way
        the model is evaluated).
    n_threads : int, default=1
        Torch CPU threads while fitting (restored afterwards).
    random_state : int or None, default=None
        Seed of the initial embeddings and the sampling: one seed, one model.
    tail_weight, diversity : float, default=0.0
        The knobs (see :mod:`marketloop.strategy.recommend`).

    Attributes
    ----------
    user_factors_, item_factors_ : numpy.ndarray
        Final embeddings of customers and products.
    n_epochs_ : int
        Epochs run.
    best_epoch_ : int
        Epoch whose embeddings were kept (1-based).
    history_ : pandas.DataFrame
        Per epoch: ``loss``, ``validation_recall`` (NaN without validation), ``seconds``.

    References
    ----------
    He, Deng, Wang, Li, Zhang & Wang (2020), "LightGCN: Simplifying and Powering Graph
    Convolution Network for Recommendation", SIGIR, eq. (3), (4) and (15).
    """

    def __init__(self, embedding_dim: int = 64, n_layers: int = 3, learning_rate: float = 0.05,
                 l2: float = 1e-4, batch_size: int = 16384, max_epochs: int = 40,
                 patience: int = 3, validation_share: float = 0.1,
                 validation_by: Literal["time", "customer"] = "time", n_threads: int = 1,
                 random_state: int | None = None, tail_weight: float = 0.0,
                 diversity: float = 0.0) -> None:
        self.embedding_dim = embedding_dim
        self.n_layers = n_layers
        self.learning_rate = learning_rate
        self.l2 = l2
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_share = validation_share
        self.validation_by = validation_by
        self.n_threads = n_threads
        self.random_state = random_state
        self.tail_weight = tail_weight
        self.diversity = diversity

    def _check_params(self) -> None:
        check_in_range(self, "embedding_dim", self.embedding_dim, low=1)
        check_in_range(self, "n_layers", self.n_layers, low=0)
        check_in_range(self, "learning_rate", self.learning_rate, low=1e-12)
        check_in_range(self, "l2", self.l2, low=0.0)
        check_in_range(self, "batch_size", self.batch_size, low=1)
        check_in_range(self, "max_epochs", self.max_epochs, low=1)
        check_in_range(self, "patience", self.patience, low=1)
        check_in_range(self, "validation_share", self.validation_share, low=0.0, high=0.9)
        if self.validation_by not in ("time", "customer"):
            raise ConfigError(describe(f"{type(self).__name__} validation_by",
                                       "'time' or 'customer'", repr(self.validation_by)))
        check_in_range(self, "n_threads", self.n_threads, low=1)

    def _fit(self, user_items: sp.csr_matrix, data: pd.DataFrame) -> None:
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(int(self.n_threads))
        try:
            self._train(user_items, data)
        finally:
            torch.set_num_threads(previous)

    def _train(self, user_items: sp.csr_matrix, data: pd.DataFrame) -> None:
        import torch

        n_users, n_items = user_items.shape
        early, held_out = _time_split(data, self.validation_share, user_items.shape,
                                      by_customer=self.validation_by == "customer")
        rng = np.random.default_rng(self.random_state)
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        ego = torch.nn.Parameter(
            0.1 * torch.randn(n_users + n_items, self.embedding_dim, generator=gen))
        graph = _norm_adjacency(early)
        optimiser = _Adam(ego, self.learning_rate)
        users, items = early.nonzero()
        negatives_from = np.flatnonzero(np.diff(early.tocsc().indptr) > 0)
        best, best_state, stale, rows = -np.inf, None, 0, []
        for epoch in range(1, int(self.max_epochs) + 1):
            start = time.perf_counter()
            loss = self._epoch(ego, graph, optimiser, users, items, early, negatives_from, rng)
            recall = np.nan
            if held_out is not None:
                with torch.no_grad():
                    final = _propagate(graph, ego.detach(), self.n_layers).numpy()
                recall = _validation_recall(final[:n_users], final[n_users:], early, held_out)
                if recall > best:
                    best, best_state, stale = recall, ego.detach().clone(), 0
                    self.best_epoch_ = epoch
                else:
                    stale += 1
            rows.append((epoch, loss, recall, time.perf_counter() - start))
            if held_out is not None and stale >= self.patience:
                break
        if best_state is None:
            best_state, self.best_epoch_ = ego.detach().clone(), len(rows)
        self.n_epochs_ = len(rows)
        self.history_ = pd.DataFrame(rows, columns=["epoch", "loss", "validation_recall",
                                                    "seconds"]).set_index("epoch")
        unseen = np.concatenate([np.diff(early.indptr) == 0,
                                 np.diff(early.tocsc().indptr) == 0])
        best_state[torch.from_numpy(unseen)] = 0.0  # first seen in the held-out period
        binary = user_items.copy()
        binary.data[:] = 1.0
        with torch.no_grad():
            final = _propagate(_norm_adjacency(binary), best_state, self.n_layers).numpy()
        self.user_factors_ = np.ascontiguousarray(final[:n_users], dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(final[n_users:], dtype=np.float32)

    def _epoch(self, ego, graph, optimiser, users: np.ndarray, items: np.ndarray,  # noqa: ANN001
               early: sp.csr_matrix, negatives_from: np.ndarray,
               rng: np.random.Generator) -> float:
        """One pass over the bought pairs in shuffled mini-batches; the mean loss."""
        import torch
        import torch.nn.functional as F

        n_users = early.shape[0]
        order = rng.permutation(len(users))
        keys = np.sort(users.astype(np.int64) * early.shape[1] + items)
        neg = _sample_negatives(early, users, negatives_from, rng, keys)
        total = 0.0
        for start in range(0, len(order), int(self.batch_size)):
            at = order[start:start + int(self.batch_size)]
            u = torch.from_numpy(users[at])
            i = torch.from_numpy(items[at] + n_users)
            j = torch.from_numpy(neg[at] + n_users)
            final = _propagate(graph, ego, self.n_layers)
            fu, fi, fj = final[u], final[i], final[j]
            ranking = -F.logsigmoid((fu * fi).sum(1) - (fu * fj).sum(1)).mean()
            penalty = (ego[u].pow(2).sum() + ego[i].pow(2).sum() + ego[j].pow(2).sum())
            loss = ranking + self.l2 * penalty / (2 * len(at))
            ego.grad = None
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(at)
        return total / max(len(order), 1)


class _Adam:
    """Adam (Kingma & Ba 2015) on one tensor, as ``torch.optim.Adam`` with its defaults.

    Written out because building a ``torch.optim`` optimiser imports ``torch._dynamo``,
    about 4 s on this machine, more than a demo-sized fit.
    """

    def __init__(self, param, lr: float, betas: tuple[float, float] = (0.9, 0.999),  # noqa: ANN001
                 eps: float = 1e-8) -> None:
        import torch

        self.param, self.lr, self.betas, self.eps, self.t = param, lr, betas, eps, 0
        self.m = torch.zeros_like(param)
        self.v = torch.zeros_like(param)

    def step(self) -> None:
        import torch

        b1, b2 = self.betas
        self.t += 1
        with torch.no_grad():
            g = self.param.grad
            self.m.mul_(b1).add_(g, alpha=1 - b1)
            self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
            m_hat = self.m / (1 - b1 ** self.t)
            v_hat = self.v / (1 - b2 ** self.t)
            self.param.sub_(self.lr * m_hat / (v_hat.sqrt() + self.eps))


def _time_split(data: pd.DataFrame, share: float, shape: tuple[int, int], *,
                by_customer: bool = False
                ) -> tuple[sp.csr_matrix, dict[int, np.ndarray] | None]:
    """Binary matrix of the early interactions and the held-out new products per customer."""
    ts = data.ts
    if share <= 0:
        cut = None
        early_rows = data
    elif by_customer:  # each customer's last share of distinct times, never all of them
        times = data[["u", "ts"]].drop_duplicates()
        rank = times.groupby("u")["ts"].rank(method="first", ascending=False).to_numpy()
        n = times.groupby("u")["ts"].transform("size").to_numpy()
        late = times[rank <= np.minimum(np.floor(share * n), n - 1)]
        key = pd.MultiIndex.from_frame(data[["u", "ts"]])
        is_late = key.isin(pd.MultiIndex.from_frame(late))
        cut, early_rows = is_late, data[~is_late]
    else:
        cut = ts.min() + (ts.max() - ts.min()) * (1 - share)
        early_rows = data[ts < cut]
    matrix = sp.csr_matrix((np.ones(len(early_rows), np.float32),
                            (early_rows.u.to_numpy(), early_rows.i.to_numpy())), shape=shape)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    if cut is None or matrix.nnz == 0:
        return (matrix if matrix.nnz else _binary(data, shape)), None
    late = data[cut] if by_customer else data[ts >= cut]
    u, i = late.u.to_numpy(), late.i.to_numpy()
    known = (np.diff(matrix.indptr)[u] > 0) & (np.diff(matrix.tocsc().indptr)[i] > 0)
    u, i = u[known], i[known]
    fresh = np.asarray(matrix[u, i]).ravel() == 0 if len(u) else np.zeros(0, bool)
    pairs = pd.DataFrame({"u": u[fresh], "i": i[fresh]}).drop_duplicates()
    if pairs.empty:
        return matrix, None
    return matrix, {int(k): g.to_numpy() for k, g in pairs.groupby("u")["i"]}


def _binary(data: pd.DataFrame, shape: tuple[int, int]) -> sp.csr_matrix:
    matrix = sp.csr_matrix((np.ones(len(data), np.float32),
                            (data.u.to_numpy(), data.i.to_numpy())), shape=shape)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def _norm_adjacency(user_items: sp.csr_matrix):  # noqa: ANN202 - a torch sparse tensor
    """``D^-1/2 A D^-1/2`` of the bipartite graph, as a torch sparse CSR tensor."""
    import torch

    n_users, n_items = user_items.shape
    adj = sp.bmat([[None, user_items], [user_items.T, None]], format="csr").astype(np.float32)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    inv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-12)), 0.0).astype(np.float32)
    adj = sp.diags(inv) @ adj @ sp.diags(inv)
    adj = adj.tocsr()
    adj.sort_indices()
    with warnings.catch_warnings():  # torch notes that sparse CSR support is "beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(adj.indptr.astype(np.int64)),
            torch.from_numpy(adj.indices.astype(np.int64)),
            torch.from_numpy(adj.data.astype(np.float32)),
            size=(n_users + n_items, n_users + n_items))


def _propagate(graph, ego, n_layers: int):  # noqa: ANN001,ANN202 - torch tensors
    """Mean of layers 0..K of ``E^(l+1) = graph E^(l)``."""
    layer, total = ego, ego
    for _ in range(int(n_layers)):
        layer = _SymmetricProduct.apply(graph, layer) if layer.requires_grad else graph @ layer
        total = total + layer
    return total / (int(n_layers) + 1)


def _symmetric_product():  # noqa: ANN202 - a torch.autograd.Function subclass
    import torch

    class SymmetricProduct(torch.autograd.Function):
        """``graph @ x`` whose gradient is ``graph @ grad``: the normalised graph is symmetric.

        Torch's own backward of a sparse CSR product builds the transpose and a sparse
        gradient of the graph on every step; this is four times faster on CPU.
        """

        @staticmethod
        def forward(ctx, graph, x):  # noqa: ANN001,ANN205
            ctx.graph = graph
            return graph @ x

        @staticmethod
        def backward(ctx, grad):  # noqa: ANN001,ANN205
            return None, ctx.graph @ grad

    return SymmetricProduct


class _LazyProduct:
    """Builds the autograd function on first use, so importing marketloop loads no torch."""

    _fn = None

    @classmethod
    def apply(cls, graph, x):  # noqa: ANN001,ANN206
        if cls._fn is None:
            cls._fn = _symmetric_product()
        return cls._fn.apply(graph, x)


_SymmetricProduct = _LazyProduct


def _sample_negatives(early: sp.csr_matrix, users: np.ndarray, candidates: np.ndarray,
                      rng: np.random.Generator, keys: np.ndarray) -> np.ndarray:
    """One product per pair, uniform over ``candidates``, re-drawn (3 times) if bought.

    ``keys`` are the sorted ``u * n_items + i`` of the bought pairs (a vectorised lookup).
    """
    n_items = early.shape[1]
    neg = candidates[rng.integers(len(candidates), size=len(users))]
    for _ in range(3):
        key = users.astype(np.int64) * n_items + neg
        at = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
        bought = keys[at] == key
        if not bought.any():
            break
        neg[bought] = candidates[rng.integers(len(candidates), size=int(bought.sum()))]
    return neg


def _validation_recall(user_vecs: np.ndarray, item_vecs: np.ndarray, early: sp.csr_matrix,
                       held_out: dict[int, np.ndarray]) -> float:
    """Mean recall@20 of the held-out new products, products bought before excluded."""
    rows = np.fromiter(held_out, dtype=np.int64)
    scores = user_vecs[rows] @ item_vecs.T
    bought = early[rows]
    scores[np.repeat(np.arange(len(rows)), np.diff(bought.indptr)), bought.indices] = -np.inf
    k = min(VALIDATION_K, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    n_items = scores.shape[1]
    picked = np.sort((np.arange(len(rows))[:, None] * n_items + top).ravel())
    sizes = np.array([len(held_out[r]) for r in rows])
    wanted = np.repeat(np.arange(len(rows)), sizes) * n_items + np.concatenate(
        [held_out[r] for r in rows])
    at = np.minimum(np.searchsorted(picked, wanted), len(picked) - 1)
    hits = np.bincount(np.repeat(np.arange(len(rows)), sizes), weights=picked[at] == wanted,
                       minlength=len(rows))
    return float(np.mean(hits / sizes))
