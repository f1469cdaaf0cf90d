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
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

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


def _prefetch_codegen(context, builder, signature, args):
    aryty = signature.args[0]
    ary = context.make_array(aryty)(context, builder, args[0])
    idx = [context.cast(builder, a, t, types.intp) for a, t in zip(args[1:], signature.args[1:], strict=True)]
    ptr = cgutils.get_item_pointer(context, builder, aryty, ary, idx, wraparound=False)
    i32 = ir.IntType(32)
    fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer(), i32, i32, i32])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
    # read, high locality, data cache: a hint only, never faults
    builder.call(fn, [builder.bitcast(ptr, ir.IntType(8).as_pointer()), ir.Constant(i32, 0), ir.Constant(i32, 3),
                      ir.Constant(i32, 1)])
    return context.get_dummy_value()


@intrinsic
def _prefetch(typingctx, arr, row, col):
    """Prefetch the cache line of ``arr[row, col]`` (LLVM's prefetch intrinsic; numba has no builtin for it)."""
    return types.void(arr, row, col), _prefetch_codegen


@intrinsic
def _prefetch1(typingctx, arr, i):
    return types.void(arr, i), _prefetch_codegen


def pack_alias(prob: np.ndarray, alias: np.ndarray) -> np.ndarray:
    """Alias tables packed one uint64 per bucket (one cache line read per draw instead of two): the keep threshold
    round(prob·2³²) in the high 33 bits, the alias in the low 31 (tables over < 2³¹ outcomes)."""
    if prob.shape[-1] >= 2**31:
        raise ValueError("packed alias tables hold at most 2^31 - 1 outcomes per table")
    thr = np.rint(prob.astype(np.float64) * 4294967296.0).astype(np.uint64)
    return np.ascontiguousarray((thr << np.uint64(31)) | alias.astype(np.uint64))


@njit(parallel=True, cache=True)
def alias_build(w, prob, alias):
    """Vose's alias tables (Vose 1991), one row of ``w`` [T, n] (float64, non-negative, positive row sums) per
    table, rows in parallel: weights scaled to mean 1; each light bucket (< 1) keeps its own weight and takes the
    rest from a heavy one, whose remaining weight goes back on the light or heavy list. O(n) per table; the CPU
    builder of :class:`sdgar.sampling.AliasTables` (the batched sweep construction in torch took 1–2 s for the
    generator's [64, 41k] tables, with its ops on a transposed view)."""
    n_tables, n = w.shape
    for t in prange(n_tables):
        total = 0.0
        for b in range(n):
            total += w[t, b]
        scaled = np.empty(n)
        light = np.empty(n, np.int64)
        heavy = np.empty(n, np.int64)
        n_light = n_heavy = 0
        for b in range(n):
            v = w[t, b] * (n / total)
            scaled[b] = v
            if v < 1.0:
                light[n_light] = b
                n_light += 1
            else:
                heavy[n_heavy] = b
                n_heavy += 1
        while n_light > 0 and n_heavy > 0:
            n_light -= 1
            lo = light[n_light]
            hi = heavy[n_heavy - 1]
            prob[t, lo] = scaled[lo]
            alias[t, lo] = hi
            rest = (scaled[hi] + scaled[lo]) - 1.0
            scaled[hi] = rest
            if rest < 1.0:
                n_heavy -= 1
                light[n_light] = hi
                n_light += 1
        for e in range(n_light):  # leftovers are 1 up to rounding
            prob[t, light[e]] = 1.0
            alias[t, light[e]] = light[e]
        for e in range(n_heavy):
            prob[t, heavy[e]] = 1.0
            alias[t, heavy[e]] = heavy[e]


_LOW31 = np.uint64(0x7FFFFFFF)
_LOW32 = np.uint64(0xFFFFFFFF)


@njit(inline="always")
def _draw_packed(state, table, t):
    """One draw from row ``t`` of a packed alias table (spec §1.4) from one 64-bit random: the bucket from its high
    32 bits (multiply-shift), the accept test (u32 < threshold) from its low 32."""
    state = state + _GOLDEN
    r = _mix(state)
    b = ((r >> np.uint64(32)) * np.uint64(table.shape[1])) >> np.uint64(32)
    e = table[t, b]
    if (r & _LOW32) < (e >> np.uint64(31)):
        return state, int(b)
    return state, int(e & _LOW31)


@njit(inline="always")
def _is_positive(indptr, indices, u, j):
    """Whether j is in u's sorted training items: a branch-free binary search (conditional moves; the branches
    of a plain one mispredict about half the time and stall the draws' cache misses behind them)."""
    lo = indptr[u]
    n = indptr[u + 1] - lo
    if n == 0:
        return False
    while n > 1:
        half = n >> 1
        lo = lo + half if indices[lo + half - 1] < j else lo
        n -= half
    return indices[lo] == j


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
def _apply(param, acc, row, grad, lr, opt, tmp):
    """param[row] −= step(grad): opt 0 SGD, 1 Adagrad (per element), 2 row-wise Adagrad (one accumulator per
    row, += mean of the squared gradient; as FBGEMM's for embedding tables). ``tmp`` ([2], param dtype) keeps the
    row loops in the parameters' dtype."""
    d = grad.shape[0]
    if opt == 0:
        for k in range(d):
            param[row, k] -= lr * grad[k]
    elif opt == 1:
        for k in range(d):
            acc[row, k] += grad[k] * grad[k]
            param[row, k] -= lr * grad[k] / (np.sqrt(acc[row, k]) + 1e-8)
    else:
        tmp[1] = 0
        ss = tmp[1]
        for k in range(d):
            ss += grad[k] * grad[k]
        acc[row, 0] += ss / d
        tmp[0] = lr / (np.sqrt(acc[row, 0]) + 1e-8)
        scale = tmp[0]
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
def _uniform_negative(state, u, n_items, indptr, indices):
    """A uniform non-positive item of u (redrawn while a training positive, at most 200 rounds); rejections."""
    rejected = 0
    j = 0
    for _ in range(200):
        state, j = _below(state, n_items)
        if not _is_positive(indptr, indices, u, j):
            break
        rejected += 1
    return state, j, rejected


@njit(inline="always")
def _prefetch_row(a, r):
    for k in range(0, a.shape[1], 16):  # one hint per 64-byte line of float32 (8 per line of 8-byte items)
        _prefetch(a, r, k)


@njit(inline="always")
def _draw_stage(state, mode, u, x_pack, y_pack, n_items, n_samples, comp, bucket, rnd):
    """Draw stage 1, parameter-free: per negative of u the component k ~ x_u (a hot row), the item bucket and the
    accept random; the packed item-table entry each will read is prefetched (so the |S| cache misses overlap)."""
    if mode == 1:
        ny = np.uint64(y_pack.shape[1])
        for s in range(n_samples):
            state, k = _draw_packed(state, x_pack, u)
            state = state + _GOLDEN
            r = _mix(state)
            b = ((r >> np.uint64(32)) * ny) >> np.uint64(32)
            comp[s] = k
            bucket[s] = b
            rnd[s] = r & _LOW32
            _prefetch(y_pack, k, b)
    else:
        nm = np.uint64(n_items)
        for s in range(n_samples):
            state = state + _GOLDEN
            bucket[s] = ((_mix(state) >> np.uint64(32)) * nm) >> np.uint64(32)
    return state


@njit(inline="always")
def _resolve_stage(state, mode, u, x_pack, y_pack, n_items, n_samples, comp, bucket, rnd, indptr, indices, negs,
                   Q, B, accQ, accB, y):
    """Draw stage 2: each negative's item (alias or bucket); a training positive of u is redrawn in place (whole
    draws, at most 200 rounds). Every row the step will read is prefetched. Returns the rejections."""
    rejected = 0
    for s in range(n_samples):
        if mode == 1:
            e = y_pack[comp[s], bucket[s]]
            j = int(bucket[s]) if rnd[s] < (e >> np.uint64(31)) else int(e & _LOW31)
        else:
            j = int(bucket[s])
        if _is_positive(indptr, indices, u, j):
            for _ in range(200):
                rejected += 1
                if mode == 1:
                    state, k = _draw_packed(state, x_pack, u)
                    state, j = _draw_packed(state, y_pack, k)
                else:
                    state, j = _below(state, n_items)
                if not _is_positive(indptr, indices, u, j):
                    break
        negs[s] = j
        _prefetch_row(Q, j)
        if mode == 1:
            _prefetch_row(y, j)
        _prefetch1(B, j)
        _prefetch(accQ, j, 0)
        _prefetch1(accB, j)
    return state, rejected


@njit(parallel=True, fastmath=FAST, cache=True)
def snis_epoch(users, items, indptr, indices, P, Q, B, accP, accQ, accB, x, y, x_pack, y_pack, n_samples, mode,
               weighting, temperature, alpha, through, neg_weight, lam, lr, opt, seed, chunk0, out, cosine=False,
               scale=1.0):
    """SD-GAR's (weighting 0: w = softmax(g/T − log Q)) or SA's (weighting 1: w = softmax(α f), detached; weighting
    2: uniform w) loss ½(softplus(−f_i) + neg_weight·Σ_j w_j softplus(f_j)) + official L2, one step per positive.

    ``users``/``items`` are this call's positives, already in the epoch's shuffled order (read sequentially: a
    random gather per row would cost two cache misses); ``out[c] = (loss sum, rejected, ess sum)`` per chunk.
    mode 1 draws from Q = x·yᵀ (packed alias tables :func:`pack_alias`; log Q from x [N, K] and y [M, K]), mode 0
    uniformly (log Q = −log M). ``cosine``: f = scale·cos(p_u, q_j) + b_j instead of p_u·q_j + b_j.
    Memory: the draws of a positive are made first (two stages, see above) and every row its step touches is
    prefetched before the first is read, so the ~|S|·14 random cache lines of a positive arrive in parallel
    (issue 21: 3–4× faster than reading them one after the other at d 128, |S| 50). The rows of the next positive
    are prefetched one positive ahead. Row arithmetic runs in the parameters' dtype (float32 in training), the
    per-sample scalars in float64.
    """
    n = users.shape[0]
    d = P.shape[1]
    n_items = Q.shape[0]
    kq = x.shape[1]
    n_chunks = (n + CHUNK - 1) // CHUNK
    log_m = math.log(n_items)
    for c in prange(n_chunks):
        state = _stream(seed, chunk0 + c)
        comp = np.zeros(n_samples, np.int64)
        bucket = np.zeros(n_samples, np.uint64)
        rnd = np.zeros(n_samples, np.uint64)
        negs = np.zeros(n_samples, np.int64)
        fneg = np.empty(n_samples)
        wts = np.empty(n_samples)
        gval = np.empty(n_samples)
        sig = np.empty(n_samples)
        da = np.empty(n_samples)  # ∂f/∂(p·q) of each negative: 1 (dot) or scale/(‖p‖‖q‖) (cosine)
        dc = np.empty(n_samples)  # cosine: scale·cos/‖q‖² (∂f/∂q = da·p − dc·q); 0 for dot
        cosv = np.empty(n_samples)
        pu = np.empty(d, P.dtype)
        gp = np.empty(d, P.dtype)
        gq = np.empty(d, P.dtype)
        sc = np.zeros(4, P.dtype)  # scalars cast to the parameters' dtype
        tmp = np.zeros(2, P.dtype)
        zero = tmp[1]
        sc[0] = lr
        sc[1] = lam
        sc[2] = lam / n_samples
        lr_, lam_, lam_neg = sc[0], sc[1], sc[2]
        loss_sum = 0.0
        rej = 0.0
        ess = 0.0
        end = min(n, (c + 1) * CHUNK)
        for t in range(c * CHUNK, end):
            u = users[t]
            i = items[t]
            if t + 1 < end:  # the next positive's own rows
                un = users[t + 1]
                _prefetch_row(P, un)
                _prefetch_row(Q, items[t + 1])
                if mode == 1:
                    _prefetch_row(x, un)
                    _prefetch_row(x_pack, un)
                _prefetch1(indptr, un)
            state = _draw_stage(state, mode, u, x_pack, y_pack, n_items, n_samples, comp, bucket, rnd)
            state, nr = _resolve_stage(state, mode, u, x_pack, y_pack, n_items, n_samples, comp, bucket, rnd,
                                       indptr, indices, negs, Q, B, accQ, accB, y)
            rej += nr
            dot_i = zero
            pp = zero
            qq_i = zero
            for k in range(d):
                pu[k] = P[u, k]
                gp[k] = 0
                dot_i += pu[k] * Q[i, k]
                pp += pu[k] * pu[k]
                qq_i += Q[i, k] * Q[i, k]
            reg = pp + qq_i + B[i] * B[i]
            if cosine:
                inv_p = 1.0 / max(math.sqrt(pp), 1e-12)
                inv_qi = 1.0 / max(math.sqrt(qq_i), 1e-12)
                cos_i = float(dot_i) * inv_p * inv_qi
                f_i = scale * cos_i + B[i]
            else:
                inv_p = 1.0
                cos_i = 0.0
                inv_qi = 1.0
                f_i = float(dot_i) + B[i]
            amax = -1e300
            reg_neg = 0.0
            p_coef = 0.0  # cosine: Σ dL/df · scale·cos/‖p‖² (∂f/∂p = da·q − (scale·cos/‖p‖²)·p)
            for s in range(n_samples):
                j = negs[s]
                dot = zero
                qq = zero
                for k in range(d):
                    dot += pu[k] * Q[j, k]
                    qq += Q[j, k] * Q[j, k]
                reg_neg += qq + B[j] * B[j]
                if cosine:
                    inv_q = 1.0 / max(math.sqrt(qq), 1e-12)
                    cs = float(dot) * inv_p * inv_q
                    f = scale * cs + B[j]
                    da[s] = scale * inv_p * inv_q
                    dc[s] = scale * cs * inv_q * inv_q
                else:
                    cs = 0.0
                    f = float(dot) + B[j]
                    da[s] = 1.0
                    dc[s] = 0.0
                cosv[s] = cs
                fneg[s] = f
                e = math.exp(-abs(f))  # one exp for softplus(f) and σ(f)
                g = max(f, 0.0) + math.log1p(e)
                sig[s] = 1.0 / (1.0 + e) if f >= 0 else e / (1.0 + e)
                gval[s] = g
                if weighting == 0:
                    if mode == 1:
                        qs = zero
                        for k in range(kq):
                            qs += x[u, k] * y[j, k]
                        a = g / temperature - math.log(float(qs))
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
                dfj = 0.5 * neg_weight * dg * sig[s]
                if cosine:
                    p_coef += dfj * scale * cosv[s] * inv_p * inv_p
                sc[3] = dfj * da[s]
                a_j = sc[3]
                sc[3] = lam_neg - dfj * dc[s]
                c_j = sc[3]
                for k in range(d):
                    qj = Q[j, k]
                    gp[k] += a_j * qj
                    gq[k] = a_j * pu[k] + c_j * qj
                _apply(Q, accQ, j, gq, lr_, opt, tmp)
                sc[3] = dfj
                _step1(B, accB, j, sc[3] + lam_neg * B[j], lr_, opt)
            dfi = -0.5 * _sigmoid(-f_i)
            if cosine:
                p_coef += dfi * scale * cos_i * inv_p * inv_p
                sc[3] = dfi * scale * inv_p * inv_qi
                a_i = sc[3]
                sc[3] = lam_ - dfi * scale * cos_i * inv_qi * inv_qi
                c_i = sc[3]
            else:
                sc[3] = dfi
                a_i = sc[3]
                c_i = lam_
            sc[3] = lam - p_coef
            c_u = sc[3]
            for k in range(d):
                qi = Q[i, k]
                gq[k] = a_i * pu[k] + c_i * qi
                gp[k] += a_i * qi + c_u * pu[k]
            _apply(Q, accQ, i, gq, lr_, opt, tmp)
            _apply(P, accP, u, gp, lr_, opt, tmp)
            sc[3] = dfi
            _step1(B, accB, i, sc[3] + lam_ * B[i], lr_, opt)
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
    for c in prange(n_chunks):
        state = _stream(seed, chunk0 + c)
        sc = np.empty(3, P.dtype)
        tmp = np.zeros(2, P.dtype)
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
                state, cand, nr = _uniform_negative(state, u, n_items, indptr, indices)
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
            _apply(Q, accQ, i, gi, lr_, opt, tmp)
            _apply(Q, accQ, j, gj, lr_, opt, tmp)
            _apply(P, accP, u, gu, lr_, opt, tmp)
            _step1(B, accB, i, dx + lam_ * B[i], lr_, opt)
            _step1(B, accB, j, lam_ * B[j] - dx, lr_, opt)
        out[c, 0] = loss_sum
        out[c, 1] = rej


# -- SD-GAR generator update (spec §1.6), one pass per step, parallel over users / items


@njit(inline="always")
def _g(P, Q, B, u, j, d, zero):
    """g = softplus(f(u, j)), f = p_u·q_j + b_j accumulated in the parameters' dtype."""
    f = zero
    for k in range(d):
        f += P[u, k] * Q[j, k]
    ff = float(f) + B[j]
    g = max(ff, 0.0) + math.log1p(math.exp(-abs(ff)))
    return g


@njit(inline="always")
def _xy(x, y, u, j, zero):
    """Q(j|u) = x_u · y_j (float32 rows, as the torch path's log_q)."""
    s = zero
    for k in range(x.shape[1]):
        s += x[u, k] * y[j, k]
    return float(s)


@njit(inline="always")
def _draw_items(state, x_pack, y_pack, u, n_samples, js, Q, y, B):
    """|S| items j ~ Q(·|u) (positives included, spec §1.6), their rows prefetched."""
    for s in range(n_samples):
        state, k = _draw_packed(state, x_pack, u)
        state, j = _draw_packed(state, y_pack, k)
        js[s] = j
        _prefetch_row(Q, j)
        _prefetch_row(y, j)
        _prefetch1(B, j)
    return state


@njit(parallel=True, fastmath=FAST, cache=True)
def gen_user_steps(P, Q, B, x, y, x_pack, y_pack, n_samples, temperature, seed, log_z, v):
    """Steps 1 and 2 for every user: log ẑ_u = logsumexp_{S_u}(g/T − log Q) − log|S_c|, then on a fresh sample
    v_u = mean_{S'_u} exp(g/T − log ẑ_u + log g − 2 log Q) · y_j (float64 sums, positives included). A user's
    draws are made first and their rows prefetched (as in :func:`snis_epoch`)."""
    n_users, kq = x.shape
    d = P.shape[1]
    n_chunks = (n_users + 255) // 256
    log_s = math.log(n_samples)
    for c in prange(n_chunks):
        state = _stream(seed, c)
        a = np.empty(n_samples)
        js = np.empty(n_samples, np.int64)
        tmp = np.zeros(1, P.dtype)
        zero = tmp[0]
        for u in range(c * 256, min(n_users, (c + 1) * 256)):
            state = _draw_items(state, x_pack, y_pack, u, n_samples, js, Q, y, B)
            amax = -1e300
            for s in range(n_samples):
                j = js[s]
                val = _g(P, Q, B, u, j, d, zero) / temperature - math.log(_xy(x, y, u, j, zero))
                a[s] = val
                if val > amax:
                    amax = val
            tot = 0.0
            for s in range(n_samples):
                tot += math.exp(a[s] - amax)
            lz = amax + math.log(tot) - log_s
            log_z[u] = lz
            state = _draw_items(state, x_pack, y_pack, u, n_samples, js, Q, y, B)
            for s in range(n_samples):
                j = js[s]
                g = _g(P, Q, B, u, j, d, zero)
                qs = _xy(x, y, u, j, zero)
                a[s] = math.exp(g / temperature - lz) * g / (qs * qs)  # = exp(g/T − log ẑ + log g − 2 log Q)
            for kk in range(kq):
                acc = 0.0
                for s in range(n_samples):
                    acc += a[s] * y[js[s], kk]
                v[u, kk] = acc / n_samples


@intrinsic
def _bits_to_f64(typingctx, i):
    """The float64 whose bits are the int64 ``i`` (an LLVM bitcast; it keeps :func:`_exp` free of calls)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split in two (Cody-Waite), so that x - n ln 2 is exact
_LN2_LO = 1.90821492927058770002e-10


@njit(inline="always", fastmath=FAST)
def _exp(x):
    """e^x for |x| ≤ 700 in arithmetic only, so a loop over it vectorises (numba has no vector libm here):
    x = n ln 2 + r, |r| ≤ ln 2 / 2, e^r by Taylor to r¹² (truncation < 2e-16), times 2ⁿ built from its bits.
    Max relative error 4.4e-16 on [-700, 700] against libm."""
    n = math.floor(x * _LOG2E + 0.5)
    r = (x - n * _LN2_HI) - n * _LN2_LO
    p = 1.0 / 479001600.0  # Horner written out: a loop over a tuple of constants does not vectorise
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    return p * _bits_to_f64((np.int64(n) + 1023) << 52)


@njit(inline="always", fastmath=FAST)
def _log1p01(e):
    """log(1 + e) for e ∈ [0, 1] in arithmetic only: 2 atanh(s), s = e / (2 + e) ≤ 1/3 (no cancellation for small
    e), odd series to s³⁵ (truncation < 1e-17). Max relative error 4.4e-16 against libm."""
    s = e / (2.0 + e)
    z = s * s
    p = 1.0 / 35.0
    p = p * z + 1.0 / 33.0
    p = p * z + 1.0 / 31.0
    p = p * z + 1.0 / 29.0
    p = p * z + 1.0 / 27.0
    p = p * z + 1.0 / 25.0
    p = p * z + 1.0 / 23.0
    p = p * z + 1.0 / 21.0
    p = p * z + 1.0 / 19.0
    p = p * z + 1.0 / 17.0
    p = p * z + 1.0 / 15.0
    p = p * z + 1.0 / 13.0
    p = p * z + 1.0 / 11.0
    p = p * z + 1.0 / 9.0
    p = p * z + 1.0 / 7.0
    p = p * z + 1.0 / 5.0
    p = p * z + 1.0 / 3.0
    p = p * z + 1.0
    return 2.0 * s * p


GEN_TILE = 8  # chunks of 64 items per step-3 tile: 512 items, their q/y/b rows (≈ 400 kB) stay in L2
_BATCH = 64  # records scored per vector batch in a step-3 walk
_EXP_RANGE = 500.0  # |g/T − log ẑ_u| beyond this: the tile is summed in log space instead


@njit(fastmath=FAST, cache=True)
def _tile_log_space(P, Q, B, x, y, log_z, order, start, i0, inv_t, out):
    """A step-3 tile's sums as online logsumexps in log space: out[slot] = log Σ exp(g/T + log(g/Q) − log ẑ_u)
    over the slot's records (a function of its own: inlined, it slowed the fast walk by 40%)."""
    kq = y.shape[1]
    d = P.shape[1]
    m = np.full(out.size, -np.inf)
    tot = np.zeros(out.size)
    zero = np.zeros(1, P.dtype)[0]
    for bk in range(start.size - 1):
        for p in range(start[bk], start[bk + 1]):
            code = order[p]
            u = (bk << 6) | (code >> 24)
            slot = code & 0xFFFFFF
            i = i0 + slot // kq
            g = _g(P, Q, B, u, i, d, zero)
            val = g * inv_t + math.log(g / _xy(x, y, u, i, zero)) - log_z[u]
            if val > m[slot]:
                tot[slot] = tot[slot] * math.exp(m[slot] - val) + 1.0
                m[slot] = val
            else:
                tot[slot] += math.exp(val - m[slot])
    for slot in range(out.size):
        out[slot] = math.log(tot[slot]) + m[slot]


@njit(parallel=True, fastmath=FAST, cache=True)
def gen_item_step(P, Q, B, x, y, pi_pack, log_mass, log_z, n_samples, temperature, seed, s_log):
    """Step 3 for every item i and component k: users u ~ π_k ∝ x_{·k} (|S_i| per item),
    s_log[i, k] = log( mean_u g/Q(i|u) · exp(g/T − log ẑ_u) ) + log Σ_u x_uk (= logsumexp_u(g/T + log g − log Q
    − log ẑ_u) − log|S_i| + log Σ_u x_uk), with Q from the new x and the old y, ẑ from step 1.

    The summand does not depend on k, only where it is added does. So per tile of ``GEN_TILE`` chunks of 64
    items: all K·|S_i| users of each item are drawn (chunk by chunk, component by component, item by item: the
    stream of chunk c is the one every version of this kernel drew), then bucketed by user block (u >> 6,
    a counting sort), and the buckets are walked in user order: each drawn user's p_u / x_u rows are read from one
    64-user block (48 kB) instead of at random from 23 MB of user tables, and the tile's item rows stay in L2.
    Per batch of records the dot products come first, then softplus, the exponential and the ratio in a loop of
    call-free arithmetic (:func:`_exp`, :func:`_log1p01`) that vectorises, then the sums per (i, k). The sums are
    direct in float64; a tile where any exponent leaves ±``_EXP_RANGE`` (overflow / underflow risk) is summed
    again as an online logsumexp in log space (the formula above, scalar libm)."""
    n_items, kq = y.shape
    n_users = x.shape[0]
    d = P.shape[1]
    block = 64
    n_chunks = (n_items + block - 1) // block
    n_tiles = (n_chunks + GEN_TILE - 1) // GEN_TILE
    n_buckets = (n_users + 63) >> 6
    log_s = math.log(n_samples)
    inv_t = 1.0 / temperature
    cap = GEN_TILE * block * kq * n_samples
    for t in prange(n_tiles):
        c0, c1 = t * GEN_TILE, min(n_chunks, (t + 1) * GEN_TILE)
        i0, i1 = c0 * block, min(n_items, c1 * block)
        users = np.empty(cap, np.int32)
        order = np.empty(cap, np.int32)  # (u & 63) << 24 | slot, slot = (i − i0)·K + k, grouped by u >> 6
        start = np.zeros(n_buckets + 1, np.int64)
        n_per = pi_pack.shape[1]
        states = np.empty(c1 - c0, np.uint64)
        for c in range(c0, c1):
            states[c - c0] = _stream(seed, c)
        r = 0
        for k in range(kq):  # component-major over the tile's chunks: π_k's table row serves 8 chunks at once
            for c in range(c0, c1):
                n_draw = min(n_items - c * block, block) * n_samples
                state = states[c - c0]
                for e in range(n_draw):  # _draw_packed on state + (e + 1)·golden: chunk c's stream, in order
                    z = _mix(state + np.uint64(e + 1) * _GOLDEN)
                    bkt = ((z >> np.uint64(32)) * np.uint64(n_per)) >> np.uint64(32)
                    en = pi_pack[k, bkt]
                    users[r + e] = bkt if (z & _LOW32) < (en >> np.uint64(31)) else en & _LOW31
                states[c - c0] = state + np.uint64(n_draw) * _GOLDEN
                for e in range(r, r + n_draw):
                    start[(users[e] >> 6) + 1] += 1
                r += n_draw
        for bk in range(n_buckets):
            start[bk + 1] += start[bk]
        pos = start[:-1].copy()
        ni = i1 - i0
        for il in range(ni):  # item-major, so a bucket's records visit each item's rows once, in a row
            for k in range(kq):
                slot = il * kq + k
                r = (k * ni + il) * n_samples  # where the draw loop put draw s of (k, item)
                for s in range(n_samples):
                    u = users[r + s]
                    order[pos[u >> 6]] = ((u & 63) << 24) | slot
                    pos[u >> 6] += 1
        nslot = (i1 - i0) * kq
        tot = np.zeros(nslot)
        f_b, q_b, lz_b, term = np.empty(_BATCH), np.empty(_BATCH), np.empty(_BATCH), np.empty(_BATCH)
        slot_b = np.empty(_BATCH, np.int64)
        tmp = np.zeros(1, P.dtype)
        zero = tmp[0]
        n_out = 0
        for bk in range(n_buckets):
            for p0 in range(start[bk], start[bk + 1], _BATCH):
                n = min(_BATCH, start[bk + 1] - p0)
                for e in range(n):
                    code = order[p0 + e]
                    u = (bk << 6) | (code >> 24)
                    slot = code & 0xFFFFFF
                    i = i0 + slot // kq
                    slot_b[e] = slot
                    f = zero
                    for kk in range(d):
                        f += P[u, kk] * Q[i, kk]
                    f_b[e] = float(f) + B[i]
                    q_b[e] = _xy(x, y, u, i, zero)
                    lz_b[e] = log_z[u]
                for e in range(n):  # call-free: vectorises
                    f = f_b[e]
                    g = max(f, 0.0) + _log1p01(_exp(-min(abs(f), 700.0)))  # softplus; _exp holds for |x| ≤ 700
                    a = g * inv_t - lz_b[e]
                    n_out += np.int64(not abs(a) <= _EXP_RANGE)  # an integer count vectorises; min/max did not
                    term[e] = g / q_b[e] * _exp(a)
                for e in range(n):
                    tot[slot_b[e]] += term[e]
        if n_out:
            _tile_log_space(P, Q, B, x, y, log_z, order, start, i0, inv_t, tot)
        else:
            for slot in range(nslot):
                tot[slot] = math.log(tot[slot])
        for il in range(i1 - i0):
            for k in range(kq):
                s_log[i0 + il, k] = tot[il * kq + k] - log_s + log_mass[k]


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


@njit(inline="always")
def _push_topk(best_v, best_i, filled, v, j):
    """Insert (v, j) into the descending buffer of the k best (ties by lower index) that already holds ``filled``
    entries; the caller has checked that it belongs there. Returns the new fill count."""
    k = best_v.shape[0]
    pos = filled if filled < k else k - 1
    while pos > 0 and (v > best_v[pos - 1] or (v == best_v[pos - 1] and j < best_i[pos - 1])):
        if pos < k:
            best_v[pos] = best_v[pos - 1]
            best_i[pos] = best_i[pos - 1]
        pos -= 1
    best_v[pos] = v
    best_i[pos] = j
    return filled + 1 if filled < k else filled


@njit(parallel=True, cache=True)
def topk_masked(scores, rows0, indptr, indices, k, out_idx):
    """Indices of the k largest scores of each row (descending; ties by lower index) with the row's training items
    (CSR ``indptr/indices`` of user ``rows0 + r``) excluded, −1 past a row's last item. A partial selection: a sorted
    buffer of k."""
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
            if (filled == k and not v > best_v[k - 1]) or not v > -np.inf:  # masked items never enter
                continue
            filled = _push_topk(best_v, best_i, filled, v, j)  # j ascends: a tie never moves past an entry
        for t in range(k):
            out_idx[r, t] = best_i[t]  # −1 where the row has fewer than k items left


@njit(inline="always")
def _bf16_key(h):
    """Order-preserving unsigned key of bfloat16 bits (larger key = larger value): flip the sign bit of positives,
    every bit of negatives (branch-free: scores of both signs would mispredict half the time)."""
    x = np.int64(h) & 0xFFFF
    return x ^ (0x8000 | ((x >> 15) * 0x7FFF))


@njit(inline="always")
def _count_above(row, t):
    c = 0
    for j in range(row.shape[0]):
        c += _bf16_key(row[j]) > t
    return c


@njit(parallel=True, cache=True)
def topk_masked_bf16(scores, rows0, indptr, indices, k, out_idx, out_bits):
    """:func:`topk_masked` on a block of bfloat16 scores given as their int16 bits (overwritten at the training
    items): the k largest per row with the row's training items excluded (descending; ties by lower index; −1 where
    a row has fewer than k items left); ``out_bits`` gets the k-th value's bits. A candidate pass for
    :func:`rescore_topk`. Selection by threshold, in passes that vectorise: a histogram of the keys of every 16th
    item gives a key t that about 2k items exceed (a counting pass checks that at least k do; else t is lowered to
    the subsample's k-th largest key, which at least k items reach), one pass collects the items above t, and a sort
    of those few (key and index packed in one int64) gives the k largest."""
    n, m = scores.shape
    stride = 16
    for r in prange(n):
        u = rows0[r]
        row = scores[r]
        for t in range(indptr[u], indptr[u + 1]):
            row[indices[t]] = -128  # bits 0xFF80 = −inf: key 0x007F, below every finite score
        thr = np.int64(0x007F)  # keep finite scores only
        ns = (m + stride - 1) // stride
        if ns > k:
            hist = np.zeros(4096, np.int32)  # bins of 16 keys
            top = np.int64(0)
            for s in range(ns):
                key = _bf16_key(row[s * stride]) >> 4
                hist[key] += 1
                top = max(top, key)
            guess = max(1, (2 * k) // stride)
            cum = 0
            t_hi = np.int64(-1)
            t_lo = np.int64(-1)
            for b in range(top, -1, -1):
                cum += hist[b]
                if t_hi < 0 and cum >= guess:
                    t_hi = (b << 4) - 1  # at least ``guess`` subsample keys are > t_hi
                if cum >= k:
                    t_lo = (b << 4) - 1  # at least k items (of the subsample) are > t_lo
                    break
            if t_hi >= 0 and _count_above(row, t_hi) >= k:
                thr = max(thr, t_hi)
            elif t_lo >= 0:
                thr = max(thr, t_lo)
        count = _count_above(row, thr)
        packed = np.empty(count, np.int64)
        c = 0
        for s0 in range(0, m, 256):  # segments without a key above thr (most) are skipped after a vectorised count
            s1 = min(m, s0 + 256)
            if _count_above(row[s0:s1], thr) == 0:
                continue
            for j in range(s0, s1):
                v = _bf16_key(row[j])
                if v > thr:
                    packed[c] = (v << 32) | (0xFFFFFFFF - j)  # sorts by key, then by lower index
                    c += 1
        packed.sort()
        for c in range(k):
            out_idx[r, c] = 0xFFFFFFFF - (packed[count - 1 - c] & 0xFFFFFFFF) if c < count else -1
        kth = packed[count - k] >> 32 if count >= k else 0  # back to bits (the inverse of _bf16_key)
        out_bits[r] = kth ^ 0x8000 if kth >= 0x8000 else kth ^ 0xFFFF


@njit(parallel=True, fastmath=FAST, cache=True)
def rescore_topk(user, item, bias, rows0, cand, cand_last, q_max, b_max, k, out_idx, ok):
    """Exact float32 scores user[u]·item[j] + bias[j] of each row's candidates (from bfloat16 scores), their top k
    (descending, ties by lower index), and ``ok[r]`` = this top k is provably the top k over every unmasked item.

    Proof of ``ok``: with bfloat16 (unit roundoff 2⁻⁸) inputs, fp32 accumulation and a bfloat16 output, an item's
    approximate score s̃ is within 2⁻⁷·|s̃| + 1.01·2⁻⁷·(‖p_u‖·max‖q‖ + max|b|) of its exact score; every
    non-candidate has s̃ ≤ s̃_L (the last candidate's), so when the k-th exact candidate score exceeds s̃_L plus that
    bound no other item can enter the top k. A row with fewer candidates than L holds every unmasked item."""
    n, n_cand = cand.shape
    d = user.shape[1]
    for r in prange(n):
        u = rows0[r]
        ex = np.empty(n_cand, np.float32)
        nv = 0
        for c in range(n_cand):
            j = cand[r, c]
            if j < 0:
                break
            s = item[j, 0] * 0
            for kk in range(d):
                s += user[u, kk] * item[j, kk]
            ex[c] = s + bias[j]
            nv += 1
        best_v = np.full(k, -np.inf, np.float32)
        best_i = np.full(k, -1, np.int64)
        filled = 0
        for c in range(nv):
            v = ex[c]
            j = cand[r, c]
            if filled == k and not (v > best_v[k - 1] or (v == best_v[k - 1] and j < best_i[k - 1])):
                continue
            filled = _push_topk(best_v, best_i, filled, v, j)
        for c in range(k):
            out_idx[r, c] = best_i[c]
        if nv < n_cand:
            ok[r] = True
        else:
            pn = 0.0
            for kk in range(d):
                pn += float(user[u, kk]) * float(user[u, kk])
            s_l = float(cand_last[r])
            bound = s_l + abs(s_l) / 128.0 + 1.01 / 128.0 * (math.sqrt(pn) * q_max + b_max)
            ok[r] = filled == k and float(best_v[k - 1]) > bound
