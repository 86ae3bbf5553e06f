"""Denoiser speed against this machine's GEMM rate, measured in the same run; prints JSON.

For each feature dimension D (N = 8192 rows, the paper-size MLP):
- training samples/s for a full step (edm_loss, backward, AdamW lr 2e-4 wd 1e-4, EMA update),
  beside the fraction of torch.mm's rate on the step's own GEMMs (forward, grad-weight and
  grad-input of every Linear; autograd skips the grad-input of layers fed by tensors without
  grad, so those are not counted). As in `training.fit`, the step and its reference run with
  freed large blocks kept in the heap (`vad_core._malloc`, glibc only), so neither side pays
  page faults for fresh 32 MiB activations; `malloc_tuning` in the JSON says whether it applied;
- scoring rows/s for a 10-step LMS reconstruction from t = 0 and for the one-step denoising
  score, beside the fraction of the faster of torch.mm and oneDNN's linear on the forward GEMMs;
- the same under bf16 autocast (CPU: this CPU's bf16 GEMM; CUDA: the default there), and on a
  small synthetic set whether bf16 changes the scores' ROC AUC.
Timings are the minimum over repeats, model and reference interleaved, so load from other
processes hurts both sides alike. `--quick` runs D = 512 only, once.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vad_core._malloc import reuse_large_allocations  # noqa: E402
from vad_core.devices import resolve_device  # noqa: E402
from vad_core.diffusion.network import DenoiserConfig, MLPDenoiser  # noqa: E402
from vad_core.diffusion.precond import EDMPrecond, edm_loss  # noqa: E402
from vad_core.diffusion.sampling import get_sigmas_karras, sample_lms, sigma_range  # noqa: E402
from vad_core.diffusion.training import TrainConfig, ema_update  # noqa: E402

P_MEAN, P_STD = -1.2, 1.2


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def best_of(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, float]:
    """Minimum seconds per function; one warm-up each, then the functions take turns."""
    for fn in fns.values():
        fn()
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            best[k] = min(best[k], timed(fn, device))
    return best


def linears(inner: MLPDenoiser) -> list[tuple[nn.Linear, bool]]:
    """Every Linear of F with whether its input carries grad (so autograd computes grad-input)."""
    out = []
    for k, layer in enumerate(inner.layers):
        out.append((layer, k > 0))
    out.append((inner.out, True))
    if inner.mapping is not None:
        maps = [m for m in inner.mapping if isinstance(m, nn.Linear)]
        out += [(m, k > 0) for k, m in enumerate(maps)]
        out += [(h, True) for h in (*inner.film_gain, *inner.film_shift)]
    return out


def main_linears(inner: MLPDenoiser) -> list[nn.Linear]:
    """The Linears that touch every row at inference (the folded path runs only these per row)."""
    return [*inner.layers, inner.out]


def gemm_reference(
    shapes: list[tuple[int, int, bool]], rows: int, device: torch.device, dtype: torch.dtype, training: bool
) -> tuple[dict[str, Callable[[], object]], float]:
    """Closures running the same GEMMs with plain torch.mm (and oneDNN linear for inference), and their FLOPs."""
    mats = []
    flops = 0.0
    for k_in, n_out, grad_in in shapes:
        a = torch.randn(rows, k_in, device=device, dtype=dtype)
        w = torch.randn(n_out, k_in, device=device, dtype=dtype) / k_in**0.5
        g = torch.randn(rows, n_out, device=device, dtype=dtype)
        b = torch.zeros(n_out, device=device, dtype=dtype)
        mats.append((a, w, g, b, grad_in))
        per = 2.0 * rows * k_in * n_out
        flops += per * ((2 + grad_in) if training else 1)

    def mm() -> None:
        for a, w, g, _, grad_in in mats:
            torch.mm(a, w.t())
            if training:
                torch.mm(g.t(), a)
                if grad_in:
                    torch.mm(g, w)

    fns: dict[str, Callable[[], object]] = {"torch_mm": mm}
    if not training and device.type == "cpu" and torch.backends.mkldnn.is_available():

        def onednn() -> None:
            for a, w, _, b, _ in mats:
                torch.ops.mkldnn._linear_pointwise(a, w, b, "none", [], "")

        fns["onednn_linear"] = onednn
    return fns, flops


def bench_dim(dim: int, rows: int, repeats: int, device: torch.device, bf16: bool) -> dict:
    torch.manual_seed(0)
    inner = MLPDenoiser(DenoiserConfig(dim=dim)).to(device)
    # Leave the zero initialisation of the output and FiLM heads, so that every path does real work.
    for head in linears(inner):
        nn.init.normal_(head[0].weight, std=0.5 / head[0].in_features ** 0.5)
    model = EDMPrecond(inner, sigma_data=1.0)
    x = torch.randn(rows, dim, device=device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    res: dict = {"dim": dim, "rows": rows, "precision": "bf16-autocast" if bf16 else "float32"}

    # -- training ------------------------------------------------------------------------
    # The optimiser and EMA exactly as `training.fit` builds and applies them.
    cfg = TrainConfig()
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=cfg.lr,
        betas=cfg.betas,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        fused=device.type in ("cpu", "cuda"),
    )
    ema = copy.deepcopy(model).requires_grad_(False)

    def train_step() -> None:
        with amp:
            loss = edm_loss(model, x, P_MEAN, P_STD).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema_update(model, ema, 0.999)

    gemm_dtype = torch.bfloat16 if bf16 else torch.float32
    train_shapes = [(m.in_features, m.out_features, g) for m, g in linears(inner)]
    ref_fns, train_flops = gemm_reference(train_shapes, rows, device, gemm_dtype, training=True)
    with reuse_large_allocations(device.type == "cpu") as tuned:
        t = best_of({"step": train_step, **ref_fns}, repeats, device)
    res["malloc_tuning"] = tuned
    res["train_samples_per_s"] = rows / t["step"]
    res["train_gflops"] = train_flops / t["step"] / 1e9
    res["train_ref_torch_mm_gflops"] = train_flops / t["torch_mm"] / 1e9
    res["train_fraction_of_torch_mm"] = t["torch_mm"] / t["step"]
    opt = ema = None  # free the optimiser state and the EMA copy before scoring  # noqa: F841

    # -- scoring -------------------------------------------------------------------------
    model.eval().requires_grad_(False)
    sigmas = get_sigmas_karras(10, *sigma_range(P_MEAN, P_STD), device=device)
    gen = torch.Generator(device=device)

    def lms_scores() -> torch.Tensor:
        with amp:
            x_t = x + sigmas[0] * torch.randn(x.shape, generator=gen.manual_seed(0), device=device)
            recon = sample_lms(model, x_t, sigmas)
        return (recon - x).square().mean(1)

    def one_step_scores() -> torch.Tensor:
        with torch.no_grad(), amp:
            noisy = x + 2.0 * torch.randn(x.shape, generator=gen.manual_seed(0), device=device)
            return (model(noisy, 2.0) - x).square().mean(1)

    score_shapes = [(m.in_features, m.out_features, False) for m in main_linears(inner)]
    ref_fns, fwd_flops = gemm_reference(score_shapes, rows, device, gemm_dtype, training=False)
    with torch.no_grad():
        t = best_of({"lms": lms_scores, "one_step": one_step_scores, **ref_fns}, repeats, device)
    ref = min(t[k] for k in ref_fns)
    res["reference_forward_gflops"] = {k: fwd_flops / t[k] / 1e9 for k in ref_fns}
    for name, evals in (("lms10", 10), ("one_step", 1)):
        key = "lms" if name == "lms10" else name
        res[f"score_{name}_rows_per_s"] = rows / t[key]
        res[f"score_{name}_gflops"] = evals * fwd_flops / t[key] / 1e9
        res[f"score_{name}_fraction_of_faster_gemm"] = evals * ref / t[key]
    return res


def synthetic(n: int = 4000, dim: int = 64, share: float = 0.03, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian mixture on a 4-d linear manifold in `dim` dims, plus `share` off-manifold points (label 1)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dim, 4)))[0]
    centres = rng.normal(scale=3.0, size=(3, 4))
    z = centres[rng.integers(0, 3, n)] + rng.normal(size=(n, 4))
    x = z @ basis.T + 0.05 * rng.normal(size=(n, dim))
    labels = np.zeros(n, dtype=np.int8)
    bad = rng.choice(n, int(share * n), replace=False)
    x[bad] = rng.normal(size=(bad.size, dim)) * np.linalg.norm(x, axis=1).mean() / dim**0.5
    labels[bad] = 1
    return x.astype(np.float32), labels


def bf16_auc_check(device: torch.device, steps: int) -> dict:
    """Train a small denoiser unsupervised on the synthetic set; AUC of its scores in float32 vs bf16."""
    from sklearn.metrics import roc_auc_score

    x_np, labels = synthetic()
    x_np = (x_np - x_np.mean(0)) / x_np.std()
    x = torch.from_numpy(x_np).to(device)
    torch.manual_seed(0)
    model = EDMPrecond(MLPDenoiser(DenoiserConfig(dim=x.shape[1], hidden=(256, 128, 64))), sigma_data=1.0).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    gen = torch.Generator(device=device).manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (1024,), generator=gen, device=device)
        loss = edm_loss(model, x[idx], P_MEAN, P_STD, generator=gen).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    sigmas = get_sigmas_karras(10, *sigma_range(P_MEAN, P_STD), device=device)
    out: dict = {"rows": int(x.shape[0]), "anomalies": int(labels.sum()), "train_steps": steps}
    for bf16 in (False, True):
        amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
        tag = "bf16" if bf16 else "float32"
        with torch.no_grad(), amp:
            one = torch.zeros(x.shape[0], device=device)
            for draw in range(8):
                eps = torch.randn(x.shape, generator=gen.manual_seed(100 + draw), device=device)
                one += (model(x + 2.0 * eps, 2.0) - x).float().square().mean(1)
            x_t = x + sigmas[9] * torch.randn(x.shape, generator=gen.manual_seed(7), device=device)
            recon = sample_lms(model, x_t, sigmas[9:])
        out[f"auc_one_step_{tag}"] = float(roc_auc_score(labels, one.cpu().numpy()))
        out[f"auc_lms_t9_{tag}"] = float(roc_auc_score(labels, (recon - x).float().square().mean(1).cpu().numpy()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="D = 512 only, one repeat, short AUC check")
    ap.add_argument("--dims", type=int, nargs="*", default=None)
    ap.add_argument("--rows", type=int, default=8192)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--no-bf16", action="store_true")
    args = ap.parse_args()
    device = resolve_device(args.device)
    dims = args.dims or ([512] if args.quick else [512, 1024, 2048])
    repeats = args.repeats or (1 if args.quick else 3)
    bf16_ok = not args.no_bf16 and (
        (device.type == "cuda" and torch.cuda.is_bf16_supported())
        or (
            device.type == "cpu"
            and torch.backends.mkldnn.is_available()
            and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    )
    report: dict = {
        "benchmark": "denoiser",
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "results": [],
    }
    precisions = [True] if device.type == "cuda" and bf16_ok else [False] + ([True] if bf16_ok else [])
    for dim in dims:
        for bf16 in precisions:
            report["results"].append(bench_dim(dim, args.rows, repeats, device, bf16))
            print(json.dumps(report["results"][-1]), file=sys.stderr, flush=True)
    if bf16_ok:
        report["bf16_auc_check"] = bf16_auc_check(device, steps=150 if args.quick else 600)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
