"""Can a Winograd convolution beat oneDNN's direct one on this CPU, for FOMM's 3x3 layers?

FOMM's per-frame render is ~89 GFLOP at 256x256, nearly all 3x3 convolutions, which PyTorch
runs through oneDNN at close to the machine's fp32 peak. The only exact way left to go faster
is fewer multiplications: Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray, "Fast
Algorithms for Convolutional Neural Networks", CVPR 2016) does 16 multiplications per 2x2
output tile and channel pair instead of 36 (2.25x fewer), at the price of transforming the
input tiles and the output tiles.

This probe times it, written with PyTorch operators (the tile transforms as fixed strided
convolutions, the products as 16 batched matmuls), against `F.conv2d` on the shapes of
vox-256's generator: the bottleneck (256->256 channels at 64x64) and the two up blocks. It
prints each layer's time, effective GFLOP/s (direct-convolution FLOPs over the time) and the
max difference. Run it on a quiet machine:

    python bench/conv_winograd_probe.py [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

# F(2x2, 3x3): output = A^T [(G g G^T) * (B^T d B)] A for a 4x4 input tile d and 3x3 filter g.
B_T = torch.tensor([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=torch.float32)
G = torch.tensor([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=torch.float32)
A_T = torch.tensor([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=torch.float32)
# The tile transforms as convolutions: 16 fixed 4x4 kernels at stride 2 take every input tile
# to its 16 transformed values; a stride-2 transposed convolution with 16 2x2 kernels puts
# each tile's 16 products back as its 2x2 outputs.
INPUT_KERNELS = torch.einsum("ai,bj->abij", B_T, B_T).reshape(16, 1, 4, 4)
OUTPUT_KERNELS = torch.einsum("pa,qb->abpq", A_T, A_T).reshape(16, 1, 2, 2)


def transformed_weights(weight: torch.Tensor) -> torch.Tensor:
    """(K, C, 3, 3) filters -> (16, K, C), once per layer."""
    u = torch.einsum("ai,kcij,bj->abkc", G, weight, G)
    return u.reshape(16, *u.shape[2:]).contiguous()


def winograd_conv3x3(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A 3x3 convolution, stride 1, padding 1, of x (N, C, H, W) with even H and W."""
    n, c, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1)).reshape(n * c, 1, h + 2, w + 2)
    v = F.conv2d(padded, INPUT_KERNELS, stride=2)  # (N*C, 16, H/2, W/2)
    tiles_h, tiles_w = v.shape[-2:]
    v = v.view(n, c, 16, tiles_h * tiles_w).permute(2, 1, 0, 3).reshape(16, c, n * tiles_h * tiles_w)
    m = torch.bmm(u, v)  # (16, K, tiles)
    k = u.shape[1]
    m = m.view(16, k * n, tiles_h, tiles_w).transpose(0, 1)
    y = F.conv_transpose2d(m, OUTPUT_KERNELS, stride=2)  # (K*N, 1, H, W)
    return y.view(k, n, h, w).transpose(0, 1) + bias.view(1, -1, 1, 1)


def seconds(function, repeats: int) -> float:
    function()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    print(f"{args.threads} threads, best of {args.repeats}")
    print("| layer (in -> out channels, side) | direct ms | Winograd ms | Winograd / direct speed | direct GFLOP/s | max difference |")
    print("|---|---|---|---|---|---|")
    with torch.no_grad():
        for channels, out_channels, side in ((256, 256, 64), (256, 128, 128), (128, 64, 256)):
            x = torch.randn(1, channels, side, side, generator=generator)
            weight = torch.randn(out_channels, channels, 3, 3, generator=generator) * 0.05
            bias = torch.randn(out_channels, generator=generator)
            u = transformed_weights(weight)
            direct = seconds(lambda: F.conv2d(x, weight, bias, padding=1), args.repeats)
            winograd = seconds(lambda: winograd_conv3x3(x, u, bias), args.repeats)
            difference = (F.conv2d(x, weight, bias, padding=1) - winograd_conv3x3(x, u, bias)).abs().max().item()
            flops = 2 * channels * out_channels * 9 * side * side
            print(
                f"| {channels} -> {out_channels}, {side}x{side} | {direct * 1e3:.1f} | {winograd * 1e3:.1f} | "
                f"{direct / winograd:.2f}x | {flops / direct / 1e9:.0f} | {difference:.1e} |"
            )


if __name__ == "__main__":
    main()
