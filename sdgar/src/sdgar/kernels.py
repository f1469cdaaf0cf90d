"""CPU kernels of the fast engine (issue 21), compiled with numba.

Why numba: it compiles plain Python loops over numpy arrays to machine code with ``prange`` thread parallelism,
works on the float32 arrays that share memory with the torch parameters (updates land in the model in place), is
a well-kept PyPI package with wheels for every platform we run on, and needs no C toolchain at install time.

Training kernels are Hogwild (Niu et al. 2011, as ``implicit``'s BPR): positives are cut into fixed chunks of
``CHUNK`` rows; chunks run in parallel and update shared rows without locks. Every random draw comes from a
splitmix64 stream keyed by (seed, chunk), so the draws do not depend on the number of threads; with one thread the
updates are sequential and a run is exactly reproducible (the resume test runs with one thread).

The math per positive is the models' (see sdgar.py, bpr.py, sa.py): alias draws from Q (spec §1.4) with training
positives rejected, SNIS weights softmax(g/T − log Q) (§1.5) with the gradient through w (``snis_grad=through``)
or not, softplus losses, and the L2 of the official form per row λ·½(‖p_u‖² + ‖q_i‖² + b_i² + Σ_j(‖q_j‖² + b_j²)/|S|)
(the batch loss is the mean of these per-row terms, so one row's share is what a per-sample step sees). Only the
optimizer differs from the faithful path: per-sample row-wise Adagrad (default: one accumulator per embedding row,
as FBGEMM's for embedding tables; it streams less memory than element-wise Adagrad: 0.31 vs 0.36 s per Gowalla
BPR epoch at load 4.6), element-wise Adagrad (LightFM's) or SGD (implicit's). Accumulators start at 0 (torch's Adagrad;
with LightFM's 1 the tiny Glorot-initialised rows barely moved: citeulike-t NDCG@50 0.05 after 75 epochs).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

CHUNK = 1024  # positives per parallel work unit (and per RNG stream)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_INV53 = 1.0 / 9007199254740992.0
# fast-math without the no-NaN/no-Inf assumptions, so that a diverging run still shows NaN/Inf to the guard
FAST = {"reassoc", "nsz", "arcp", "contract", "afn"}


def set_threads(n: int | None) -> None:
    if n:
        numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))


@njit(inline="always")
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(inline="always")
def _uniform(state):
    """(new state, uniform float64 in [0, 1)) of a splitmix64 stream."""
    state = state + _GOLDEN
    return state, float(_mix(state) >> np.uint64(11)) * _INV53


@njit(inline="always")
def _below(state, n):
    state, r = _uniform(state)
    k = int(r * n)
    return state, k if k < n else n - 1


@njit(inline="always")
def _stream(seed, chunk):
    return _mix(np.uint64(seed) * _GOLDEN + np.uint64(chunk) + np.uint64(1))


@njit(inline="always")
def _alias(state, prob, alias, t):
    """One draw from alias table ``t`` (one uniform for the bucket, one for the accept test; spec §1.4)."""
    n = prob.shape[1]
    state, b = _below(state, n)
    state, a = _uniform(state)
    if a < prob[t, b]:
        return state, b
    return state, int(alias[t, b])


@njit(inline="always")
def _is_positive(indptr, indices, u, j):
    lo, hi = indptr[u], indptr[u + 1]
    while lo < hi:
        mid = (lo + hi) // 2
        v = indices[mid]
        if v < j:
            lo = mid + 1
        elif v > j:
            hi = mid
        else:
            return True
    return False


@njit(inline="always")
def _softplus(x):
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


@njit(inline="always")
def _sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@njit(inline="always")
def _dot(a, ra, b, rb, d):
    s = 0.0
    for k in range(d):
        s += a[ra, k] * b[rb, k]
    return s


@njit(inline="always")
def _apply(param, acc, row, grad, lr, opt):
    """param[row] −= step(grad): opt 0 SGD, 1 Adagrad (per element), 2 row-wise Adagrad (one accumulator per
    row, += mean of the squared gradient; as FBGEMM's for embedding tables)."""
    d = grad.shape[0]
    if opt == 0:
        for k in range(d):
            param[row, k] -= lr * grad[k]
    elif opt == 1:
        for k in range(d):
            acc[row, k] += grad[k] * grad[k]
            param[row, k] -= lr * grad[k] / (np.sqrt(acc[row, k]) + 1e-8)
    else:
        ss = 0.0
        for k in range(d):
            ss += grad[k] * grad[k]
        acc[row, 0] += ss / d
        scale = lr / (np.sqrt(acc[row, 0]) + 1e-8)
        for k in range(d):
            param[row, k] -= scale * grad[k]


@njit(inline="always")
def _step1(param, acc, row, grad, lr, opt):
    if opt != 0:
        acc[row] += grad * grad
        param[row] -= lr * grad / (np.sqrt(acc[row]) + 1e-8)
    else:
        param[row] -= lr * grad


@njit(inline="always")
def _draw_negative(state, mode, u, n_items, indptr, indices, x_prob, x_alias, y_prob, y_alias, max_rounds):
    """A non-positive item of u: uniform (mode 0) or j ~ Q(·|u) by two alias draws (mode 1); returns rejections."""
    rejected = 0
    j = 0
    for _ in range(max_rounds):
        if mode == 1:
            state, k = _alias(state, x_prob, x_alias, u)
            state, j = _alias(state, y_prob, y_alias, k)
        else:
            state, j = _below(state, n_items)
        if not _is_positive(indptr, indices, u, j):
            return state, j, rejected
        rejected += 1
    return state, j, rejected


@njit(parallel=True, fastmath=FAST, cache=True)
def snis_epoch(users, items, indptr, indices, P, Q, B, accP, accQ, accB, x, y, x_prob, x_alias, y_prob,
               y_alias, n_samples, mode, weighting, temperature, alpha, through, neg_weight, lam, lr, opt, seed,
               chunk0, out):
    """SD-GAR's (weighting 0: w = softmax(g/T − log Q)) or SA's (weighting 1: w = softmax(α f), detached; weighting
    2: uniform w) loss ½(softplus(−f_i) + neg_weight·Σ_j w_j softplus(f_j)) + official L2, one step per positive.

    ``users``/``items`` are this call's positives, already in the epoch's shuffled order (read sequentially: a
    random gather per row would cost two cache misses); ``out[c] = (loss sum, rejected, ess sum)`` per chunk.
    mode 1 draws from Q = x·yᵀ (alias tables; log Q from x [N, K] and y [M, K]), mode 0 uniformly (log Q = −log M).
    Row arithmetic runs in the parameters' dtype (float32 in training), the per-sample scalars in float64.
    """
    n = users.shape[0]
    d = P.shape[1]
    n_items = Q.shape[0]
    kq = x.shape[1]
    n_chunks = (n + CHUNK - 1) // CHUNK
    log_m = math.log(n_items)
    for c in prange(n_chunks):
        state = _stream(seed, chunk0 + c)
        negs = np.empty(n_samples, np.int64)
        fneg = np.empty(n_samples)
        wts = np.empty(n_samples)
        gval = np.empty(n_samples)
        pu = np.empty(d, P.dtype)
        gp = np.empty(d, P.dtype)
        gq = np.empty(d, P.dtype)
        sc = np.empty(4, P.dtype)  # scalars cast to the parameters' dtype
        sc[0] = lr
        sc[1] = lam
        sc[2] = lam / n_samples
        lr_, lam_, lam_neg = sc[0], sc[1], sc[2]
        loss_sum = 0.0
        rej = 0.0
        ess = 0.0
        for t in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            u = users[t]
            i = items[t]
            for s in range(n_samples):
                state, j, nr = _draw_negative(state, mode, u, n_items, indptr, indices, x_prob, x_alias, y_prob,
                                              y_alias, 200)
                rej += nr
                negs[s] = j
            f_i = B[i]
            reg = B[i] * B[i]
            for k in range(d):
                pu[k] = P[u, k]
                gp[k] = 0
                f_i += pu[k] * Q[i, k]
                reg += pu[k] * pu[k] + Q[i, k] * Q[i, k]
            amax = -1e300
            reg_neg = 0.0
            for s in range(n_samples):
                j = negs[s]
                f = B[j]
                rr = B[j] * B[j]
                for k in range(d):
                    f += pu[k] * Q[j, k]
                    rr += Q[j, k] * Q[j, k]
                reg_neg += rr
                fneg[s] = f
                g = _softplus(f)
                gval[s] = g
                if weighting == 0:
                    if mode == 1:
                        qs = 0.0
                        for k in range(kq):
                            qs += x[u, k] * y[j, k]
                        a = g / temperature - math.log(qs)
                    else:
                        a = g / temperature + log_m
                elif weighting == 1:
                    a = alpha * f
                else:
                    a = 0.0
                wts[s] = a
                if a > amax:
                    amax = a
            z = 0.0
            for s in range(n_samples):
                wts[s] = math.exp(wts[s] - amax)
                z += wts[s]
            gbar = 0.0
            sq = 0.0
            for s in range(n_samples):
                wts[s] /= z
                gbar += wts[s] * gval[s]
                sq += wts[s] * wts[s]
            ess += 1.0 / sq
            loss_sum += 0.5 * (_softplus(-f_i) + neg_weight * gbar) + lam * 0.5 * (reg + reg_neg / n_samples)
            # gradients: dL/df_i = −½σ(−f_i); dL/dg_j = ½·nw·(w_j + [through] w_j (g_j − ḡ)/T); dg/df = σ(f)
            for s in range(n_samples):
                j = negs[s]
                dg = wts[s]
                if through and weighting == 0:
                    dg += wts[s] * (gval[s] - gbar) / temperature
                sc[3] = 0.5 * neg_weight * dg * _sigmoid(fneg[s])
                dfj = sc[3]
                for k in range(d):
                    qj = Q[j, k]
                    gp[k] += dfj * qj
                    gq[k] = dfj * pu[k] + lam_neg * qj
                _apply(Q, accQ, j, gq, lr_, opt)
                _step1(B, accB, j, dfj + lam_neg * B[j], lr_, opt)
            sc[3] = -0.5 * _sigmoid(-f_i)
            dfi = sc[3]
            for k in range(d):
                qi = Q[i, k]
                gq[k] = dfi * pu[k] + lam_ * qi
                gp[k] += dfi * qi + lam_ * pu[k]
            _apply(Q, accQ, i, gq, lr_, opt)
            _apply(P, accP, u, gp, lr_, opt)
            _step1(B, accB, i, dfi + lam_ * B[i], lr_, opt)
        out[c, 0] = loss_sum
        out[c, 1] = rej
        out[c, 2] = ess


@njit(parallel=True, fastmath=FAST, cache=True)
def bpr_epoch(users, items, indptr, indices, P, Q, B, accP, accQ, accB, n_candidates, lam, lr, opt, seed,
              chunk0, out):
    """BPR (n_candidates 1) or DNS (the best-scoring of n_candidates uniform non-positives, scored by the current
    model): softplus(−(f_i − f_j)) + λ·½(‖p_u‖² + ‖q_i‖² + ‖q_j‖² + b_i² + b_j²), one step per positive."""
    n = users.shape[0]
    d = P.shape[1]
    n_items = Q.shape[0]
    n_chunks = (n + CHUNK - 1) // CHUNK
    dummy_p = np.zeros((1, 1), np.float32)
    dummy_a = np.zeros((1, 1), np.int32)
    for c in prange(n_chunks):
        state = _stream(seed, chunk0 + c)
        sc = np.empty(3, P.dtype)
        gi = np.empty(d, P.dtype)
        gj = np.empty(d, P.dtype)
        gu = np.empty(d, P.dtype)
        sc[0] = lr
        sc[1] = lam
        lr_, lam_ = sc[0], sc[1]
        loss_sum = 0.0
        rej = 0.0
        for t in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            u = users[t]
            i = items[t]
            best = -1e300
            j = 0
            for _ in range(n_candidates):
                state, cand, nr = _draw_negative(state, 0, u, n_items, indptr, indices, dummy_p, dummy_a, dummy_p,
                                                 dummy_a, 200)
                rej += nr
                if n_candidates == 1:
                    j = cand
                    break
                f = B[cand]
                for k in range(d):
                    f += P[u, k] * Q[cand, k]
                if f > best:
                    best = f
                    j = cand
            xuij = B[i] - B[j]
            reg = B[i] * B[i] + B[j] * B[j]
            for k in range(d):
                xuij += P[u, k] * (Q[i, k] - Q[j, k])
                reg += P[u, k] * P[u, k] + Q[i, k] * Q[i, k] + Q[j, k] * Q[j, k]
            loss_sum += _softplus(-xuij) + lam * 0.5 * reg
            sc[2] = -_sigmoid(-xuij)
            dx = sc[2]
            for k in range(d):
                pu, qi, qj = P[u, k], Q[i, k], Q[j, k]
                gi[k] = dx * pu + lam_ * qi
                gj[k] = lam_ * qj - dx * pu
                gu[k] = dx * (qi - qj) + lam_ * pu
            _apply(Q, accQ, i, gi, lr_, opt)
            _apply(Q, accQ, j, gj, lr_, opt)
            _apply(P, accP, u, gu, lr_, opt)
            _step1(B, accB, i, dx + lam_ * B[i], lr_, opt)
            _step1(B, accB, j, lam_ * B[j] - dx, lr_, opt)
        out[c, 0] = loss_sum
        out[c, 1] = rej


# -- SD-GAR generator update (spec §1.6), one pass per step, parallel over users / items


@njit(inline="always")
def _f(P, Q, B, u, j, d):
    f = B[j]
    for k in range(d):
        f += P[u, k] * Q[j, k]
    return f


@njit(parallel=True, fastmath=FAST, cache=True)
def gen_user_steps(P, Q, B, x, y, x_prob, x_alias, y_prob, y_alias, n_samples, temperature, seed, log_z, v):
    """Steps 1 and 2 for every user: log ẑ_u = logsumexp_{S_u}(g/T − log Q) − log|S_c|, then on a fresh sample
    v_u = mean_{S'_u} exp(g/T − log ẑ_u + log g − 2 log Q) · y_j (float64, positives included)."""
    n_users, kq = x.shape
    d = P.shape[1]
    n_chunks = (n_users + 255) // 256
    for c in prange(n_chunks):
        state = _stream(seed, c)
        a = np.empty(n_samples)
        js = np.empty(n_samples, np.int64)
        for u in range(c * 256, min(n_users, (c + 1) * 256)):
            amax = -1e300
            for s in range(n_samples):
                state, k = _alias(state, x_prob, x_alias, u)
                state, j = _alias(state, y_prob, y_alias, k)
                qs = 0.0
                for kk in range(kq):
                    qs += x[u, kk] * y[j, kk]
                val = _softplus(_f(P, Q, B, u, j, d)) / temperature - math.log(qs)
                a[s] = val
                if val > amax:
                    amax = val
            tot = 0.0
            for s in range(n_samples):
                tot += math.exp(a[s] - amax)
            lz = amax + math.log(tot) - math.log(n_samples)
            log_z[u] = lz
            for s in range(n_samples):
                state, k = _alias(state, x_prob, x_alias, u)
                state, j = _alias(state, y_prob, y_alias, k)
                js[s] = j
                qs = 0.0
                for kk in range(kq):
                    qs += x[u, kk] * y[j, kk]
                g = _softplus(_f(P, Q, B, u, j, d))
                a[s] = math.exp(g / temperature - lz + math.log(g) - 2.0 * math.log(qs))
            for kk in range(kq):
                acc = 0.0
                for s in range(n_samples):
                    acc += a[s] * y[js[s], kk]
                v[u, kk] = acc / n_samples


@njit(parallel=True, fastmath=FAST, cache=True)
def gen_item_step(P, Q, B, x, y, pi_prob, pi_alias, log_mass, log_z, n_samples, temperature, seed, s_log):
    """Step 3 for every item i and component k: users u ~ π_k ∝ x_{·k} (|S_i| per item),
    s_log[i, k] = logsumexp_u(g/T + log g − log Q(i|u) − log ẑ_u) − log|S_i| + log Σ_u x_uk, with Q from the new x
    and the old y, ẑ from step 1. Within a block of items the loop runs component by component: the users drawn
    from one π_k are few and hot, so their rows of P and x stay in cache across the block's items."""
    n_items, kq = y.shape
    d = P.shape[1]
    block = 256
    n_chunks = (n_items + block - 1) // block
    for c in prange(n_chunks):
        state = _stream(seed, c)
        a = np.empty(n_samples)
        for k in range(kq):
            for i in range(c * block, min(n_items, (c + 1) * block)):
                amax = -1e300
                for s in range(n_samples):
                    state, u = _alias(state, pi_prob, pi_alias, k)
                    qs = 0.0
                    for kk in range(kq):
                        qs += x[u, kk] * y[i, kk]
                    g = _softplus(_f(P, Q, B, u, i, d))
                    val = g / temperature + math.log(g) - math.log(qs) - log_z[u]
                    a[s] = val
                    if val > amax:
                        amax = val
                tot = 0.0
                for s in range(n_samples):
                    tot += math.exp(a[s] - amax)
                s_log[i, k] = amax + math.log(tot) - math.log(n_samples) + log_mass[k]


# -- ALS: conjugate gradient per row (Takács et al. 2011; what implicit's least_squares_cg does), parallel rows


@njit(parallel=True, fastmath=FAST, cache=True)
def als_cg(X, Y, gram, indptr, indices, conf, steps):
    """Warm-started CG on (YᵀY + λI + Y_uᵀ(C_u − I)Y_u) x_u = Y_uᵀ c_u for every row u, in place, in X's dtype."""
    n, d = X.shape
    for u in prange(n):
        sc = np.zeros(3, X.dtype)  # scalars in X's dtype (float32 arithmetic stays float32)
        sc[2] = 1
        zero, one = sc[0], sc[2]
        x = X[u].copy()
        r = np.empty(d, X.dtype)
        for a in range(d):
            acc = zero
            for b in range(d):
                acc += gram[a, b] * x[b]
            r[a] = -acc
        for t in range(indptr[u], indptr[u + 1]):
            i = indices[t]
            c = conf[t]
            yx = zero
            for a in range(d):
                yx += Y[i, a] * x[a]
            coef = c - (c - one) * yx
            for a in range(d):
                r[a] += coef * Y[i, a]
        p = r.copy()
        rs = zero
        for a in range(d):
            rs += r[a] * r[a]
        ap = np.empty(d, X.dtype)
        for _ in range(steps):
            if rs < 1e-20:
                break
            for a in range(d):
                acc = zero
                for b in range(d):
                    acc += gram[a, b] * p[b]
                ap[a] = acc
            for t in range(indptr[u], indptr[u + 1]):
                i = indices[t]
                yp = zero
                for a in range(d):
                    yp += Y[i, a] * p[a]
                coef = (conf[t] - one) * yp
                for a in range(d):
                    ap[a] += coef * Y[i, a]
            pap = zero
            for a in range(d):
                pap += p[a] * ap[a]
            sc[1] = rs / max(pap, 1e-30)
            alpha = sc[1]
            rs_new = zero
            for a in range(d):
                x[a] += alpha * p[a]
                r[a] -= alpha * ap[a]
                rs_new += r[a] * r[a]
            sc[1] = rs_new / rs
            beta = sc[1]
            for a in range(d):
                p[a] = r[a] + beta * p[a]
            rs = rs_new
        for a in range(d):
            X[u, a] = x[a]


# -- evaluation: top-k per row of a score block with the training items masked


@njit(parallel=True, cache=True)
def topk_masked(scores, rows0, indptr, indices, k, out_idx):
    """Indices of the k largest scores of each row (descending; ties by lower index) with the row's training items
    (CSR ``indptr/indices`` of user ``rows0 + r``) excluded. A partial selection: a sorted buffer of k."""
    n, m = scores.shape
    for r in prange(n):
        u = rows0[r]
        row = scores[r]
        lo, hi = indptr[u], indptr[u + 1]
        for t in range(lo, hi):
            row[indices[t]] = -np.inf
        best_v = np.full(k, -np.inf, np.float32)
        best_i = np.full(k, -1, np.int64)
        filled = 0
        for j in range(m):
            v = row[j]
            if filled == k and not v > best_v[k - 1]:
                continue
            pos = filled if filled < k else k - 1
            while pos > 0 and v > best_v[pos - 1]:
                if pos < k:
                    best_v[pos] = best_v[pos - 1]
                    best_i[pos] = best_i[pos - 1]
                pos -= 1
            best_v[pos] = v
            best_i[pos] = j
            if filled < k:
                filled += 1
        for t in range(k):
            out_idx[r, t] = best_i[t] if best_i[t] >= 0 else 0
