#!/usr/bin/env python3
"""torch_decode.py - a PyTorch reference decode step of vx-serve bench's synthetic models.

The dense baseline of issue 12 must be a strong one: this is the same decoder (Llama
architecture, Qwen3's q/k norm, GQA, SwiGLU, bf16 weights, a bf16 KV cache) written the way a
careful PyTorch engine writes it: a static KV cache [layers][B][Hkv][ctx][D] updated in place
with index_copy_, attention by scaled_dot_product_attention over the filled prefix (GQA by
enable_gqa, as ../shared/bench/peers.py calls it), fused QKV and gate/up matrices, and the
whole step captured once in a CUDA graph
and replayed. Runs on the GPU machine only (tests/bench/, not part of CTest); prints a
progress line on stderr and one JSON line on stdout with decode tokens/s for the same batch
and context as the vx-serve run. Random weights and KV (the timing does not depend on them).

  python3 torch_decode.py --model qwen3-1.7b --context 32768 --batch 33 --steps 64
"""
import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F

PRESETS = {  # the shapes of vx-serve's synthetic presets (runtime/serve/weights.c)
    "qwen3-1.7b": dict(dim=2048, hidden=6144, layers=28, heads=16, kv_heads=8, head_dim=128,
                       vocab=151936, qk_norm=True, theta=1e6, eps=1e-6),
    "llama-3.1-8b": dict(dim=4096, hidden=14336, layers=32, heads=32, kv_heads=8, head_dim=128,
                         vocab=128256, qk_norm=False, theta=5e5, eps=1e-5),
}


def rms(x, w, eps):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * w).to(torch.bfloat16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen3-1.7b", choices=sorted(PRESETS))
    ap.add_argument("--context", type=int, default=32768)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--layers", type=int, default=0, help="override the preset's layer count")
    a = ap.parse_args()
    c = dict(PRESETS[a.model])
    if a.layers:
        c["layers"] = a.layers
    dev, bf = "cuda", torch.bfloat16
    torch.manual_seed(1)
    d, D, Hq, Hkv, I, V, L = (c["dim"], c["head_dim"], c["heads"], c["kv_heads"], c["hidden"],
                              c["vocab"], c["layers"])
    B, N, S = a.batch, a.context, a.steps
    ctx = N + S + 8
    qd, kd = Hq * D, Hkv * D

    def mat(o, i):
        return ((torch.rand(o, i, device=dev) * 2 - 1) / i ** 0.5).to(bf)

    emb = (torch.rand(V, d, device=dev) * 2 - 1).to(bf)
    layers = [dict(wqkv=mat(qd + 2 * kd, d), wo=mat(d, qd), w13=mat(2 * I, d), w2=mat(d, I),
                   n1=torch.ones(d, device=dev), n2=torch.ones(d, device=dev),
                   qn=torch.ones(D, device=dev), kn=torch.ones(D, device=dev)) for _ in range(L)]
    fnorm = torch.ones(d, device=dev)
    print(f"torch_decode: {a.model} ({L} layers), B={B}, context {N}: allocating the KV cache "
          f"({2 * L * B * Hkv * ctx * D * 2 / 1e9:.1f} GB bf16)", file=sys.stderr)
    kcache = torch.empty(L, B, Hkv, ctx, D, device=dev, dtype=bf)
    vcache = torch.empty(L, B, Hkv, ctx, D, device=dev, dtype=bf)
    kcache.uniform_(-1, 1)
    vcache.uniform_(-1, 1)
    inv = 1.0 / (c["theta"] ** (torch.arange(0, D, 2, device=dev).float() / D))
    pos = torch.full((1,), N, device=dev, dtype=torch.long)   # the step's position (all rows)
    tok = torch.randint(0, V, (B,), device=dev)

    def step():
        x = emb[tok].float()                                   # [B][d] f32 residual
        ang = pos.float()[:, None] * inv[None, :]              # [1][D/2]
        cos = torch.cat([ang.cos(), ang.cos()], -1)
        sin = torch.cat([ang.sin(), ang.sin()], -1)
        for li, w in enumerate(layers):
            h = rms(x, w["n1"], c["eps"])
            qkv = (h @ w["wqkv"].t()).float()
            q = qkv[:, :qd].view(B, Hq, D)
            k = qkv[:, qd:qd + kd].view(B, Hkv, D)
            v = qkv[:, qd + kd:].view(B, Hkv, D)
            if c["qk_norm"]:
                q = q * torch.rsqrt(q.pow(2).mean(-1, keepdim=True) + c["eps"]) * w["qn"]
                k = k * torch.rsqrt(k.pow(2).mean(-1, keepdim=True) + c["eps"]) * w["kn"]

            def rope(t):
                t1, t2 = t[..., :D // 2], t[..., D // 2:]
                return t * cos + torch.cat([-t2, t1], -1) * sin
            q, k = rope(q).to(bf), rope(k).to(bf)
            kcache[li].index_copy_(2, pos, k.unsqueeze(2))
            vcache[li].index_copy_(2, pos, v.to(bf).unsqueeze(2))
            # the filled prefix only: a static shape per graph (the context of the run)
            kk = kcache[li, :, :, :N + 1]
            vv = vcache[li, :, :, :N + 1]
            # as ../shared/bench/peers.py calls it (its dense SDPA reached 4.17 TB/s at B=8)
            o = F.scaled_dot_product_attention(q.unsqueeze(2), kk, vv, enable_gqa=True)
            x = x + (o.reshape(B, qd) @ w["wo"].t()).float()
            h = rms(x, w["n2"], c["eps"])
            gu = h @ w["w13"].t()
            x = x + ((F.silu(gu[:, :I].float()) * gu[:, I:].float()).to(bf) @ w["w2"].t()).float()
        logits = rms(x, fnorm, c["eps"]) @ emb.t()
        tok.copy_(logits.float().argmax(-1))

    with torch.no_grad():
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            step()
        for _ in range(3):
            g.replay()
        torch.cuda.synchronize()
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(S + 1)]
        t0 = time.perf_counter()
        ev[0].record()
        for i in range(S):
            g.replay()
            ev[i + 1].record()
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    lat = sorted(ev[i].elapsed_time(ev[i + 1]) for i in range(S))
    wbytes = 2 * (L * ((qd + 2 * kd) * d + d * qd + 3 * d * I) + V * d)
    kvbytes = 2 * L * B * Hkv * (N + 1) * D * 2
    res = dict(bench="torch_decode.py", model=a.model, layers=L, batch=B, context=N, steps=S,
               torch=torch.__version__, gpu=torch.cuda.get_device_name(),
               decode_tokens_per_s=B * S / wall, step_p50_ms=lat[S // 2],
               step_p99_ms=lat[min(S - 1, int(0.99 * S))], bytes_per_step=wbytes + kvbytes,
               tbps=(wbytes + kvbytes) / (wall / S) / 1e12,
               note="the attended prefix is fixed at the capture's context (N + 1 keys)")
    print(f"torch_decode: {res['decode_tokens_per_s']:.1f} tokens/s, step p50 {res['step_p50_ms']:.3f} ms, "
          f"{res['tbps']:.3f} TB/s", file=sys.stderr)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
