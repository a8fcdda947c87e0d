"""Per-sample Kronecker-factored Fisher statistics (KFAC), collected with hooks.

Private helpers of :class:`skal.strategies.balnet.BALNet`.

For a weight matrix ``W`` used at positions ``t`` (one position for a dense
layer, the output pixels of a convolution, the time steps of a recurrent
layer), with inputs ``a_t`` (a 1 appended when the layer has a bias) and
pre-activation gradients ``g_t = d loss / d (W a_t)``, the per-sample factors
are (thesis Eq. 5.16-5.18, 5.22)::

    psi_i = sum_t a_t a_t^T        tau_i = sum_t g_t g_t^T

and the Fisher block of a set ``A`` is ``psi_A (x) tau_A`` with the means of
the factors over ``A``. Parameters that KFAC does not cover (convolution biases,
BatchNorm scales and shifts) get the diagonal of their exact Fisher,
``mean_i (d loss_i / d theta)^2``.

Nothing here forms a per-sample matrix: the labeled set contributes summed
factors, and each candidate contributes the scalars
``a_j = Tr(psi_j psi_A^-1) = sum_t a_t^T psi_A^-1 a_t`` and
``c_j = Tr(tau_j tau_A^-1)`` per layer, and ``e_j = sum_p g_p^2 / D_p`` for the
diagonal blocks.

How the gradients are read: each supported module's forward hook adds a zero
"probe" tensor to its output (``out + Z``). ``d loss / d Z`` is then the
gradient with respect to the pre-activation, even when an in-place activation
overwrites ``out`` afterwards, and one ``torch.autograd.grad`` call per label
returns all of them. Recurrent modules are re-run by an unrolled Python
implementation (same weights, same outputs) so that the gate pre-activations of
every time step exist as tensors.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence

__all__ = [
    "SUPPORTED_LAYERS",
    "Block",
    "FisherRecorder",
    "damped_inverses",
    "factor_sums",
    "find_blocks",
    "iter_block_stats",
    "sample_coefficients",
]

SUPPORTED_LAYERS = (
    "nn.Linear, nn.Conv1d, nn.Conv2d (groups=1), nn.RNN, nn.GRU, nn.LSTM (proj_size=0), "
    "nn.BatchNorm1d/2d/3d"
)
_CONV = (nn.Conv1d, nn.Conv2d)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_RECURRENT = (nn.RNN, nn.GRU, nn.LSTM)


class Block:
    """One block of the block-diagonal Fisher.

    ``kind == "kfac"``: a weight matrix (with its bias for dense and recurrent
    layers) with factors of sizes ``d_in`` and ``d_out``. ``kind == "diag"``:
    ``size`` parameters with a diagonal Fisher.
    """

    __slots__ = ("d_in", "d_out", "kind", "name", "size")

    def __init__(self, name, kind, d_in=0, d_out=0, size=0):
        self.name = name
        self.kind = kind
        self.d_in = d_in
        self.d_out = d_out
        self.size = size

    def __repr__(self):
        if self.kind == "kfac":
            return (f"Block({self.name!r}, kfac, psi {self.d_in}x{self.d_in}, "
                    f"tau {self.d_out}x{self.d_out})")
        return f"Block({self.name!r}, diag, {self.size})"


def _trainable(p):
    return p is not None and p.requires_grad


def _rnn_suffixes(module):
    for layer in range(module.num_layers):
        for direction in range(2 if module.bidirectional else 1):
            yield f"_l{layer}" + ("_reverse" if direction else "")


def find_blocks(module):
    """The Fisher blocks of ``module``'s supported, trainable layers.

    Returns
    -------
    blocks : list of Block
    owners : dict
        ``{id(submodule): [(role, block index), ...]}`` for the hooks.

    Raises
    ------
    ValueError
        If the module has no supported trainable layer.
    """
    blocks, owners = [], {}

    def add(sub, role, block):
        owners.setdefault(id(sub), []).append((role, len(blocks)))
        blocks.append(block)

    for name, sub in module.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(sub, nn.Linear):
            if _trainable(sub.weight):
                d_in = sub.in_features + (sub.bias is not None)
                add(sub, "weight", Block(prefix + "weight", "kfac", d_in, sub.out_features))
        elif isinstance(sub, _CONV) and sub.groups == 1:
            if _trainable(sub.weight):
                d_in = sub.in_channels * int(np.prod(sub.kernel_size))
                add(sub, "weight", Block(prefix + "weight", "kfac", d_in, sub.out_channels))
            if _trainable(sub.bias):
                add(sub, "bias", Block(prefix + "bias", "diag", size=sub.out_channels))
        elif isinstance(sub, _BATCHNORM) and sub.affine and _trainable(sub.weight):
            add(sub, "affine", Block(prefix + "weight+bias", "diag", size=2 * sub.num_features))
        elif isinstance(sub, _RECURRENT) and getattr(sub, "proj_size", 0) == 0:
            gates = 4 if isinstance(sub, nn.LSTM) else 3 if isinstance(sub, nn.GRU) else 1
            d_out = gates * sub.hidden_size
            for sfx in _rnn_suffixes(sub):
                layer_in = sub.input_size if sfx.startswith("_l0") else (
                    sub.hidden_size * (2 if sub.bidirectional else 1))
                if _trainable(getattr(sub, "weight_ih" + sfx)):
                    add(sub, "ih" + sfx,
                        Block(f"{prefix}weight_ih{sfx}", "kfac", layer_in + sub.bias, d_out))
                if _trainable(getattr(sub, "weight_hh" + sfx)):
                    add(sub, "hh" + sfx,
                        Block(f"{prefix}weight_hh{sfx}", "kfac", sub.hidden_size + sub.bias, d_out))
    if not blocks:
        raise ValueError(
            f"{type(module).__name__} has no trainable layer BALNet can compute Fisher "
            f"statistics for; supported layers: {SUPPORTED_LAYERS}."
        )
    return blocks, owners


def _with_ones(acts, bias):
    if not bias:
        return acts
    return torch.cat([acts, acts.new_ones(acts.shape[:-1] + (1,))], dim=-1)


class FisherRecorder:
    """Context manager that hooks ``module``'s supported layers.

    After each forward pass inside the context, :attr:`entries` lists, per
    call of a hooked layer, ``(block index, activations or None, probe,
    grad_to_stats)``, where ``grad_to_stats(d loss / d probe)`` gives the
    per-sample statistics: ``(b, P, d_out)`` gradients for KFAC blocks,
    ``(b, size)`` parameter gradients for diagonal blocks.
    """

    def __init__(self, module, owners):
        self.module = module
        self.owners = owners
        self.entries = []
        self._handles = []

    def __enter__(self):
        for sub in self.module.modules():
            roles = self.owners.get(id(sub))
            if roles is None:
                continue
            if isinstance(sub, nn.Linear):
                hook = self._linear_hook
            elif isinstance(sub, _CONV):
                hook = self._conv_hook
            elif isinstance(sub, _BATCHNORM):
                hook = self._batchnorm_hook
            else:
                self._handles.append(
                    sub.register_forward_hook(self._recurrent_hook, with_kwargs=True))
                continue
            self._handles.append(sub.register_forward_hook(hook))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []
        return False

    def reset(self):
        self.entries = []

    def probes(self):
        seen, out = set(), []
        for _, _, probe, _ in self.entries:
            if id(probe) not in seen:
                seen.add(id(probe))
                out.append(probe)
        return out

    # -- hooks -------------------------------------------------------------

    @staticmethod
    def _probe(output):
        return torch.zeros_like(output, requires_grad=True)

    def _linear_hook(self, sub, args, output):
        x = args[0]
        if x.dim() < 2:
            raise ValueError("BALNet needs batched inputs for nn.Linear layers.")
        b, d_out = x.shape[0], output.shape[-1]
        acts = _with_ones(x.detach().reshape(b, -1, x.shape[-1]), sub.bias is not None)
        probe = self._probe(output)
        for _role, idx in self.owners[id(sub)]:
            self.entries.append((idx, acts, probe, lambda g, b=b, d=d_out: g.reshape(b, -1, d)))
        return output + probe

    def _conv_hook(self, sub, args, output):
        x = args[0].detach()
        one_d = isinstance(sub, nn.Conv1d)
        if x.dim() != (3 if one_d else 4):
            raise ValueError("BALNet needs batched inputs for convolution layers.")
        pad = sub._reversed_padding_repeated_twice
        if any(pad):
            mode = "constant" if sub.padding_mode == "zeros" else sub.padding_mode
            x = F.pad(x, pad, mode=mode)
        if one_d:
            x = x.unsqueeze(2)
            kernel = (1,) + sub.kernel_size
            dilation, stride = (1,) + sub.dilation, (1,) + sub.stride
        else:
            kernel, dilation, stride = sub.kernel_size, sub.dilation, sub.stride
        # (b, C_in * kh * kw, P): the same column order as weight.view(C_out, -1).
        acts = F.unfold(x, kernel, dilation=dilation, stride=stride).transpose(1, 2)
        b, c_out = output.shape[0], output.shape[1]
        probe = self._probe(output)
        def per_position(g):  # (b, C_out, *spatial) -> (b, P, C_out)
            return g.reshape(b, c_out, -1).transpose(1, 2)

        def bias_grad(g):  # the bias gradient sums over positions
            return g.reshape(b, c_out, -1).sum(-1)

        for role, idx in self.owners[id(sub)]:
            if role == "weight":
                self.entries.append((idx, acts, probe, per_position))
            else:
                self.entries.append((idx, None, probe, bias_grad))
        return output + probe

    def _batchnorm_hook(self, sub, args, output):
        x = args[0].detach()
        b, c = x.shape[0], x.shape[1]
        shape = (1, c) + (1,) * (x.dim() - 2)
        if sub.training or sub.running_mean is None:
            # Batch statistics couple the samples; their per-sample gradient is
            # then only approximate (BALNet runs the module in eval mode).
            dims = [0] + list(range(2, x.dim()))
            mean = x.mean(dims, keepdim=True)
            var = x.var(dims, unbiased=False, keepdim=True)
        else:
            mean, var = sub.running_mean.view(shape), sub.running_var.view(shape)
        x_hat = ((x - mean) / torch.sqrt(var + sub.eps)).reshape(b, c, -1)
        probe = self._probe(output)

        def fn(g, b=b, c=c, x_hat=x_hat):
            g = g.reshape(b, c, -1)
            return torch.cat([(g * x_hat).sum(-1), g.sum(-1)], dim=1)

        for _, idx in self.owners[id(sub)]:
            self.entries.append((idx, None, probe, fn))
        return output + probe

    def _recurrent_hook(self, sub, args, kwargs, output):
        x = args[0] if args else kwargs["input"]
        hx = args[1] if len(args) > 1 else kwargs.get("hx")
        return self._unrolled(sub, x, hx)

    def _unrolled(self, sub, x, hx):
        """Re-run ``sub`` step by step, recording gate inputs and probes."""
        if isinstance(x, PackedSequence):
            raise TypeError(
                "BALNet does not support PackedSequence inputs to recurrent layers; "
                "pad the sequences instead."
            )
        if x.dim() != 3:
            raise ValueError("BALNet needs batched inputs for recurrent layers.")
        if sub.batch_first:
            x = x.transpose(0, 1)
        T, b = x.shape[0], x.shape[1]
        H = sub.hidden_size
        n_dir = 2 if sub.bidirectional else 1
        lstm = isinstance(sub, nn.LSTM)
        if hx is None:
            h0 = x.new_zeros(sub.num_layers * n_dir, b, H)
            c0 = h0
        elif lstm:
            h0, c0 = hx
        else:
            h0, c0 = hx, None
        roles = dict(self.owners[id(sub)])
        layer_input = x
        h_n, c_n = [], []
        for layer in range(sub.num_layers):
            outs = []
            for direction in range(n_dir):
                sfx = f"_l{layer}" + ("_reverse" if direction else "")
                w_ih, w_hh = getattr(sub, "weight_ih" + sfx), getattr(sub, "weight_hh" + sfx)
                b_ih = getattr(sub, "bias_ih" + sfx) if sub.bias else None
                b_hh = getattr(sub, "bias_hh" + sfx) if sub.bias else None
                inp = layer_input.flip(0) if direction else layer_input
                gi = F.linear(inp, w_ih, b_ih)  # (T, b, gates * H), all steps at once
                probe_i = self._probe(gi)
                gi = gi + probe_i
                probe_h = inp.new_zeros(gi.shape, requires_grad=True)
                h = h0[layer * n_dir + direction]
                c = c0[layer * n_dir + direction] if lstm else None
                prev, ys = [], []
                for t in range(T):
                    prev.append(h)
                    gh = F.linear(h, w_hh, b_hh) + probe_h[t]
                    h, c = _cell(sub, gi[t], gh, h, c)
                    ys.append(h)
                if "ih" + sfx in roles:
                    acts = _with_ones(inp.detach().transpose(0, 1), sub.bias)
                    self.entries.append((roles["ih" + sfx], acts, probe_i, _time_major_to_batch))
                if "hh" + sfx in roles:
                    acts = _with_ones(torch.stack(prev).detach().transpose(0, 1), sub.bias)
                    self.entries.append((roles["hh" + sfx], acts, probe_h, _time_major_to_batch))
                y = torch.stack(ys)
                outs.append(y.flip(0) if direction else y)
                h_n.append(h)
                c_n.append(c)
            layer_input = torch.cat(outs, dim=-1) if n_dir == 2 else outs[0]
            if sub.training and sub.dropout > 0 and layer < sub.num_layers - 1:
                layer_input = F.dropout(layer_input, sub.dropout, training=True)
        output = layer_input.transpose(0, 1) if sub.batch_first else layer_input
        h_n = torch.stack(h_n)
        if lstm:
            return output, (h_n, torch.stack(c_n))
        return output, h_n


def _time_major_to_batch(g):
    return g.transpose(0, 1)  # (T, b, .) -> (b, T, .)


def _cell(sub, gi, gh, h, c):
    """One step of ``sub``'s recurrence from the gate pre-activations (PyTorch's equations)."""
    if isinstance(sub, nn.LSTM):
        i, f, g, o = (gi + gh).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if isinstance(sub, nn.GRU):
        i_r, i_z, i_n = gi.chunk(3, dim=-1)
        h_r, h_z, h_n = gh.chunk(3, dim=-1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return (1 - z) * n + z * h, None
    act = torch.tanh if sub.nonlinearity == "tanh" else torch.relu
    return act(gi + gh), None


# ---------------------------------------------------------------------------
# Per-batch statistics


def iter_block_stats(module, blocks, owners, batches, log_prob_fn, targets):
    """Per-sample statistics of every block, batch by batch.

    Parameters
    ----------
    module : nn.Module
        In the mode the caller wants (BALNet uses eval mode).
    blocks, owners : from :func:`find_blocks`
    batches : iterable of (rows, tensor)
    log_prob_fn : callable
        Module output -> log-probabilities (n, C).
    targets : ndarray of int, "predicted" or "expected"
        True labels (one per row of the data behind ``batches``), the predicted
        label, or every label weighted by its predicted probability.

    Yields
    ------
    rows : slice
    weights : tensor of shape (K, b)
        Label weights (K = 1 unless ``targets == "expected"``).
    stats : list, one entry per block, None when the block was not used
        KFAC: ``(acts (b, P, d_in), grads (K, b, P, d_out))``;
        diagonal: ``grads (K, b, size)``.
    """
    with FisherRecorder(module, owners) as rec:
        for rows, xb in batches:
            rec.reset()
            with torch.enable_grad():
                log_probs = log_prob_fn(module(xb))
                b = log_probs.shape[0]
                if isinstance(targets, str) and targets == "expected":
                    weights = log_probs.detach().exp().T  # (C, b)
                    labels = list(range(log_probs.shape[1]))
                else:
                    if isinstance(targets, str):  # "predicted"
                        y = log_probs.detach().argmax(1)
                    else:
                        y = torch.as_tensor(targets[rows], device=log_probs.device,
                                            dtype=torch.long)
                    weights = log_probs.new_ones(1, b)
                    labels = [y]
                probes = rec.probes()
                per_label = []
                for k, label in enumerate(labels):
                    if not probes:  # no hooked layer ran: nothing to differentiate
                        per_label.append({})
                        continue
                    if isinstance(label, int):
                        loss = -log_probs[:, label].sum()
                    else:
                        loss = -log_probs.gather(1, label[:, None]).sum()
                    # Samples do not interact in eval mode, so the gradient of the
                    # summed loss w.r.t. a probe row is that sample's own gradient.
                    grads = torch.autograd.grad(
                        loss, probes, retain_graph=k < len(labels) - 1, allow_unused=True)
                    per_label.append({id(p): g for p, g in zip(probes, grads, strict=True)})
            yield rows, weights, _collect(blocks, rec.entries, per_label)


def _collect(blocks, entries, per_label):
    acts = [[] for _ in blocks]
    grads = [[[] for _ in per_label] for _ in blocks]
    for idx, a, probe, fn in entries:
        if a is not None:
            acts[idx].append(a)
        for k, gmap in enumerate(per_label):
            g = gmap.get(id(probe))
            g = torch.zeros_like(probe) if g is None else g
            grads[idx][k].append(fn(g.detach()))
    stats = []
    for i, block in enumerate(blocks):
        if not grads[i][0]:
            stats.append(None)
        elif block.kind == "kfac":
            # A layer called several times contributes all its positions.
            stats.append((torch.cat(acts[i], dim=1),
                          torch.stack([torch.cat(gk, dim=1) for gk in grads[i]])))
        else:
            # Several calls of a layer add up to one parameter gradient.
            stats.append(torch.stack([torch.stack(gk).sum(0) for gk in grads[i]]))
    return stats


# ---------------------------------------------------------------------------
# Labeled-set factors and their damped inverses


def factor_sums(stats_iter, blocks):
    """Sum the factors over a data set.

    Returns
    -------
    sums : dict with ``n`` (number of samples) and per-block lists ``psi``,
        ``tau`` (float64 matrices; None for diagonal blocks or unused blocks)
        and ``diag`` (float64 vectors).
    """
    psi = [None] * len(blocks)
    tau = [None] * len(blocks)
    diag = [None] * len(blocks)
    n = 0
    for _rows, w, stats in stats_iter:
        n += w.shape[1]
        for i, (block, s) in enumerate(zip(blocks, stats, strict=True)):
            if s is None:
                continue
            if block.kind == "kfac":
                a, g = s
                a2 = a.reshape(-1, a.shape[-1])
                p = (a2.T @ a2).double()
                gw = g * w[:, :, None, None].sqrt()
                g2 = gw.reshape(-1, gw.shape[-1])
                t = (g2.T @ g2).double()
                psi[i] = p if psi[i] is None else psi[i] + p
                tau[i] = t if tau[i] is None else tau[i] + t
            else:
                d = (w[:, :, None] * s.square()).sum((0, 1)).double()
                diag[i] = d if diag[i] is None else diag[i] + d
    return {"n": n, "psi": psi, "tau": tau, "diag": diag}


def _damped_inverse(S, n, damping):
    """Inverse of ``S / n + lambda I`` with ``lambda = damping * Tr(S / n) / dim``.

    Returns the inverse and ``Tr(S (S/n + lambda I)^-1)``. With ``damping=0``
    the inverse is the pseudo-inverse (eigenvalues below round-off dropped).
    """
    M = S / n
    M = (M + M.T) / 2
    d = M.shape[0]
    trace = float(torch.diagonal(M).sum())
    if trace <= 0.0:  # the layer saw only zeros: it carries no information
        return torch.zeros_like(M), 0.0
    if damping > 0:
        # Damped factors are positive definite: Cholesky is several times
        # cheaper than an eigendecomposition on the large dense-layer factors.
        L, info = torch.linalg.cholesky_ex(M + (damping * trace / d) * torch.eye(
            d, dtype=M.dtype, device=M.device))
        if int(info) == 0:
            inv = torch.cholesky_inverse(L)
            return inv, float(n * (M * inv).sum())
    evals, evecs = torch.linalg.eigh(M)
    evals = evals.clamp_min(0.0)
    denom = evals + damping * trace / d
    # Factors come from float32 activations: without damping, eigenvalues this
    # small relative to the largest are round-off, and the pseudo-inverse drops them.
    tol = float(evals.max()) * d * 1e-6 if damping == 0 else 0.0
    keep = (denom > tol) & (denom > 0)
    inv_e = torch.where(keep, 1.0 / torch.where(keep, denom, torch.ones_like(denom)),
                        torch.zeros_like(denom))
    inv = (evecs * inv_e) @ evecs.T
    return inv, float(n * (evals * inv_e).sum())


def damped_inverses(sums, blocks, damping):
    """Damped inverse factors and the labeled set's own trace terms.

    Blocks never used on the labeled set are dropped (``None``).

    Returns
    -------
    inv : list, per block, ``(psi_inv, tau_inv)`` (KFAC) or ``d_inv`` (diagonal)
        as float32 tensors, or None.
    const : dict
        ``phi`` and ``tau`` (arrays over KFAC blocks) hold
        ``Sum_{i in A} Tr(psi_i psi_A^-1)`` and the same for tau (equal to
        ``|A| dim`` without damping); ``delta`` is the diagonal blocks' total
        ``Sum_{i in A} Sum_p g_ip^2 / D_p``; ``kfac`` and ``diag`` list the block
        indices kept.
    """
    n = sums["n"]
    inv = [None] * len(blocks)
    phi, tau_c, kfac_idx, diag_idx = [], [], [], []
    delta = 0.0
    for i, block in enumerate(blocks):
        if block.kind == "kfac":
            if sums["psi"][i] is None:
                continue
            p_inv, p_tr = _damped_inverse(sums["psi"][i], n, damping)
            t_inv, t_tr = _damped_inverse(sums["tau"][i], n, damping)
            inv[i] = (p_inv.float(), t_inv.float())
            phi.append(p_tr)
            tau_c.append(t_tr)
            kfac_idx.append(i)
        else:
            if sums["diag"][i] is None:
                continue
            D = sums["diag"][i] / n
            lam = damping * float(D.mean())
            denom = D + lam
            d_inv = torch.where(denom > 0, 1.0 / denom.clamp_min(1e-300), torch.zeros_like(denom))
            inv[i] = d_inv.float()
            delta += float((sums["diag"][i] * d_inv).sum())
            diag_idx.append(i)
    const = {
        "n": n,
        "phi": np.asarray(phi, dtype=np.float64),
        "tau": np.asarray(tau_c, dtype=np.float64),
        "delta": float(delta),
        "kfac": kfac_idx,
        "diag": diag_idx,
    }
    return inv, const


def sample_coefficients(stats_iter, n_samples, inv, const):
    """Per-sample trace coefficients against the (damped) labeled-set factors.

    Returns
    -------
    a, c : ndarray of shape (n_samples, n_kfac_blocks)
        ``Tr(psi_j psi_A^-1)`` and ``Tr(tau_j tau_A^-1)``.
    e : ndarray of shape (n_samples,)
        ``Sum_p F_j,p / D_p`` over all diagonal blocks.
    """
    kfac, diag = const["kfac"], const["diag"]
    a = np.zeros((n_samples, len(kfac)))
    c = np.zeros((n_samples, len(kfac)))
    e = np.zeros(n_samples)
    for rows, w, stats in stats_iter:
        for col, i in enumerate(kfac):
            if stats[i] is None:
                continue
            acts, g = stats[i]
            p_inv, t_inv = inv[i]
            a[rows, col] = ((acts @ p_inv) * acts).sum((1, 2)).double().cpu().numpy()
            q = ((g @ t_inv) * g).sum((2, 3))  # (K, b)
            c[rows, col] = (w * q).sum(0).double().cpu().numpy()
        for i in diag:
            if stats[i] is None:
                continue
            q = (stats[i].square() * inv[i]).sum(2)  # (K, b)
            e[rows] += (w * q).sum(0).double().cpu().numpy()
    return a, c, e
