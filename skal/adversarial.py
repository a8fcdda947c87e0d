"""Batched DeepFool (Moosavi-Dezfooli et al., CVPR 2016).

DeepFool finds a small perturbation ``r`` that changes a classifier's decision
by repeatedly linearising the classifier around the current point and jumping
to the nearest linearised decision boundary. Its norm is an upper bound on the
distance of a sample to the decision boundary, which is what DFAL
(:class:`skal.strategies.dfal.DFAL`) ranks samples by.

The implementation here runs many samples at once: all samples of a batch
advance together; each step needs one forward pass and one batched backward
pass (all ``n_classes - 1`` logit differences at once, through autograd's
batched gradients); samples that have flipped are taken out of the active batch
and replaced by new ones from the input, so the batch stays full until the
input runs out and the slow tail of hard samples costs only its own size.
"""

import numbers

import numpy as np
import torch

from .base import check_int
from .nets import eval_mode

__all__ = ["deepfool"]

# The official DeepFool code pushes each step 1e-4 beyond the linearised
# boundary, so that a step never lands exactly on it (which would not flip the
# label and would stall the attack when overshoot is 0).
_STEP_EPS = 1e-4


def _check_norm(norm):
    if isinstance(norm, str):
        if norm.lower() == "inf":
            return np.inf
    elif isinstance(norm, numbers.Real) and not isinstance(norm, bool):
        if norm == 2:
            return 2
        if norm == np.inf:
            return np.inf
    raise ValueError(f"norm must be 2 or np.inf, got {norm!r}.")


def _module_dtype_device(module):
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype, p.device
    for b in module.buffers():
        if b.is_floating_point():
            return b.dtype, b.device
    return None, None


def _diff_grads(module, x, order, batched):
    """Logit differences and their input gradients for a batch.

    Parameters
    ----------
    x : tensor of shape (a, ...)
    order : long tensor of shape (a, K); column 0 is the original label.
    batched : list of one bool; set to False the first time batched
        gradients fail, so a module that vmap cannot handle falls back to one
        backward pass per class.

    Returns
    -------
    diffs : tensor (a, K - 1), f_k(x) - f_label(x) for the classes of ``order``.
    grads : tensor (a, K - 1, d), gradients of ``diffs`` wrt ``x`` (flattened).
    """
    x = x.detach().requires_grad_(True)
    n_diff = order.shape[1] - 1
    with torch.enable_grad():
        logits = module(x)
        f = logits.gather(1, order)
        diffs = f[:, 1:] - f[:, :1]
        grads = None
        if batched[0]:
            eye = torch.eye(n_diff, dtype=diffs.dtype, device=diffs.device)
            cot = eye[:, None, :].expand(n_diff, x.shape[0], n_diff)
            try:
                # Samples are independent in eval mode, so one vector-Jacobian
                # product per class difference, batched over classes by vmap,
                # gives every per-sample gradient in one call.
                (grads,) = torch.autograd.grad(
                    diffs, x, grad_outputs=cot, is_grads_batched=True, retain_graph=True
                )
                grads = grads.transpose(0, 1)
            except (RuntimeError, NotImplementedError):
                batched[0] = False
                grads = None
        if grads is None:
            grads = torch.stack(
                [
                    torch.autograd.grad(diffs[:, k].sum(), x, retain_graph=k < n_diff - 1)[0]
                    for k in range(n_diff)
                ],
                dim=1,
            )
    return diffs.detach(), grads.reshape(x.shape[0], n_diff, -1).detach()


def _step(diffs, grads, norm):
    """One DeepFool step per sample: jump to the nearest linearised boundary."""
    fabs = diffs.abs()
    if norm == 2:
        wnorm = grads.norm(dim=2)
    else:  # l_inf attack: distances are measured with the dual (l_1) norm
        wnorm = grads.abs().sum(dim=2)
    zero = wnorm == 0
    pert = torch.where(zero, torch.full_like(fabs, np.inf), fabs / torch.where(zero, 1, wnorm))
    # argmin over all candidate classes at once: the running minimum over
    # classes cannot go stale, unlike a loop that forgets to update it.
    best = pert.argmin(dim=1)
    rows = torch.arange(grads.shape[0], device=grads.device)
    p = pert[rows, best]
    w = grads[rows, best]
    wn = wnorm[rows, best]
    finite = torch.isfinite(p)
    p = torch.where(finite, p, torch.zeros_like(p))
    if norm == 2:
        scale = (p + _STEP_EPS) / torch.where(finite, wn, 1)
        r = scale[:, None] * w
    else:
        r = (p + _STEP_EPS)[:, None] * torch.sign(w)
    # A sample whose logit differences have zero gradient cannot move.
    return torch.where(finite[:, None], r, torch.zeros_like(r))


def deepfool(
    module,
    X,
    *,
    max_iter=50,
    overshoot=0.02,
    norm=2,
    n_classes=None,
    batch_size=128,
    device=None,
    return_labels=False,
):
    """Minimal adversarial perturbations by DeepFool, batched.

    Parameters
    ----------
    module : torch.nn.Module
        Classifier returning one logit per class (shape ``(n, C)``, ``C >= 2``).
        It is run in eval mode (dropout off, BatchNorm on running statistics),
        so samples do not interact; each submodule's mode is restored afterwards.
    X : ndarray or torch.Tensor of shape (n_samples, ...)
        Inputs, in the module's input space. Never modified.
    max_iter : int, default=50
        Maximum number of DeepFool steps per sample.
    overshoot : float, default=0.02
        The returned perturbation is ``(1 + overshoot) * r_total``, where
        ``r_total`` is the sum of the steps (DeepFool paper convention; every
        step is also evaluated at ``x + (1 + overshoot) * r_total``).
    norm : {2, np.inf}, default=2
        ``2`` is the l2 attack; ``np.inf`` (or ``"inf"``) the l_inf variant of the
        DeepFool paper (distances ``|f'_k| / ||w'_k||_1``, steps along ``sign(w'_k)``).
    n_classes : int or None, default=None
        Only the ``n_classes`` classes with the largest logits at ``X`` (the
        predicted one included) are considered as targets. ``None``: all.
    batch_size : int, default=128
        Number of samples advanced together. Each step back-propagates
        ``batch_size * (n_classes - 1)`` gradients at once, which bounds memory.
    device : str, torch.device or None, default=None
        Where to compute; ``None`` uses the module's device.
    return_labels : bool, default=False
        Also return the original labels, the labels at ``X + r`` and the number
        of steps taken.

    Returns
    -------
    r : ndarray or torch.Tensor, shaped like ``X``
        Perturbations; numpy for numpy input, a tensor on ``X``'s device for
        tensor input. A sample whose label did not change within ``max_iter``
        steps keeps its last (unsuccessful) perturbation.
    labels, adv_labels, n_iter : ndarray or torch.Tensor of shape (n_samples,)
        Only when ``return_labels=True``. ``adv_labels != labels`` marks the
        successful attacks.

    Examples
    --------
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Linear(4, 3)
    >>> X = torch.randn(5, 4).numpy()
    >>> r, y, y_adv, n_iter = deepfool(net, X, return_labels=True)
    >>> r.shape, bool((y != y_adv).all())
    ((5, 4), True)
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}.")
    max_iter = check_int(max_iter, "max_iter", 1)
    if not isinstance(overshoot, numbers.Real) or isinstance(overshoot, bool) or not (
        0 <= overshoot < np.inf
    ):
        raise ValueError(f"overshoot must be a finite float >= 0, got {overshoot!r}.")
    norm = _check_norm(norm)
    n_classes = check_int(n_classes, "n_classes", 2, allow_none=True)
    batch_size = check_int(batch_size, "batch_size", 1)

    is_tensor = isinstance(X, torch.Tensor)
    if not is_tensor:
        X = np.asarray(X)
        if X.dtype.kind not in "fiub":
            raise ValueError(f"X must be numeric, got dtype {X.dtype}.")
    if X.ndim < 2:
        raise ValueError(f"X must have shape (n_samples, ...), got shape {tuple(X.shape)}.")
    finite = torch.isfinite(X).all() if is_tensor else np.isfinite(X).all()
    if not bool(finite):
        raise ValueError("X contains NaN or infinite values.")

    mdtype, mdevice = _module_dtype_device(module)
    if device is None:
        device = mdevice if mdevice is not None else (X.device if is_tensor else "cpu")
    device = torch.device(device)
    dtype = mdtype or (X.dtype if is_tensor and X.is_floating_point() else torch.float32)
    scale = 1.0 + float(overshoot)

    n = X.shape[0]
    shape = tuple(X.shape[1:])
    # Results are gathered on the CPU (or the input tensor's device) so that a
    # large pool does not sit on the accelerator.
    out_device = X.device if is_tensor else torch.device("cpu")
    r_out = torch.zeros((n,) + shape, dtype=dtype, device=out_device)
    lab_out = torch.zeros(n, dtype=torch.long, device=out_device)
    adv_out = torch.zeros(n, dtype=torch.long, device=out_device)
    it_out = torch.zeros(n, dtype=torch.long, device=out_device)

    def load(start, stop):
        chunk = X[start:stop]
        if not is_tensor:
            chunk = torch.from_numpy(np.ascontiguousarray(chunk))
        return chunk.to(device=device, dtype=dtype)

    batched = [True]
    with eval_mode(module), torch.no_grad():
        # Per-active-sample state; rows are compacted whenever samples finish.
        idx = torch.zeros(0, dtype=torch.long, device=device)
        x0 = torch.zeros((0,) + shape, dtype=dtype, device=device)
        r_tot = torch.zeros_like(x0)
        order = None
        n_it = torch.zeros(0, dtype=torch.long, device=device)
        next_i = 0
        while next_i < n or idx.numel():
            free = batch_size - idx.numel()
            if free > 0 and next_i < n:
                stop = min(n, next_i + free)
                new = load(next_i, stop)
                idx = torch.cat([idx, torch.arange(next_i, stop, device=device)])
                x0 = torch.cat([x0, new])
                r_tot = torch.cat([r_tot, torch.zeros_like(new)])
                n_it = torch.cat(
                    [n_it, torch.zeros(stop - next_i, dtype=torch.long, device=device)])
                n_new = stop - next_i
                next_i = stop
            else:
                n_new = 0

            x = x0 + scale * r_tot
            logits = module(x)
            if logits.ndim != 2 or logits.shape[1] < 2:
                raise ValueError(
                    "module must return logits of shape (n_samples, n_classes) with "
                    f"n_classes >= 2, got shape {tuple(logits.shape)}."
                )
            pred = logits.argmax(dim=1)
            if n_new:
                n_cls = logits.shape[1] if n_classes is None else min(n_classes, logits.shape[1])
                fresh = logits[-n_new:].clone()
                # The predicted class goes first even when logits tie.
                fresh.scatter_(1, pred[-n_new:, None], np.inf)
                new_order = fresh.topk(n_cls, dim=1).indices
                order = new_order if order is None else torch.cat([order, new_order])

            label = order[:, 0]
            done = ((n_it > 0) & (pred != label)) | (n_it >= max_iter)
            if bool(done.any()):
                dst = idx[done].to(out_device)
                r_out[dst] = (scale * r_tot[done]).to(out_device)
                lab_out[dst] = label[done].to(out_device)
                adv_out[dst] = pred[done].to(out_device)
                it_out[dst] = n_it[done].to(out_device)
                keep = ~done
                idx, x0, r_tot, order, n_it, x = (
                    idx[keep], x0[keep], r_tot[keep], order[keep], n_it[keep], x[keep]
                )
                if not idx.numel():
                    continue

            diffs, grads = _diff_grads(module, x, order, batched)
            r_tot = r_tot + _step(diffs, grads, norm).reshape(r_tot.shape)
            n_it = n_it + 1

    if is_tensor:
        r = r_out.to(X.dtype) if X.is_floating_point() else r_out
    else:
        out_dtype = X.dtype if X.dtype.kind == "f" else np.float32
        r = r_out.numpy().astype(out_dtype, copy=False)
        lab_out, adv_out, it_out = lab_out.numpy(), adv_out.numpy(), it_out.numpy()
    if return_labels:
        return r, lab_out, adv_out, it_out
    return r
