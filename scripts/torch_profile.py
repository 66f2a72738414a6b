"""PyTorch CPU side of docs/PERFORMANCE.md's per-shape comparison: times 1x1 and depthwise 3x3
convolutions (forward, batch 64) at the reference network's three plane sizes, then profiles
the reference network's eval forward by operator.

    tv/bin/python scripts/torch_profile.py ../shared/bench      # beside the checkout
"""
import ast, importlib.util, re, sys, time
import torch
from torch.profiler import profile, ProfilerActivity

bench = sys.argv[1] if len(sys.argv) > 1 else "../shared/bench"
torch.set_num_threads(2)
torch.manual_seed(0)


def ms(f, n=50):
    for _ in range(5):
        f()
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n * 1e3


with torch.no_grad():
    for c, h in [(16, 28), (32, 14), (64, 7)]:
        x = torch.randn(64, c, h, h)
        pw = torch.nn.Conv2d(c, c, 1, bias=False)
        dw = torch.nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        a, b = ms(lambda: pw(x)), ms(lambda: dw(x))
        print(f"n64 c{c} {h}x{h}: 1x1 forward {a:.3f} ms ({2 * 64 * c * c * h * h / a / 1e6:.1f} GFLOP/s), "
              f"depthwise 3x3 forward {b:.3f} ms ({2 * 64 * c * 9 * h * h / b / 1e6:.1f} GFLOP/s)")

spec = importlib.util.spec_from_file_location("torch_darts", f"{bench}/torch_darts.py")
td = importlib.util.module_from_spec(spec)
spec.loader.exec_module(td)
text = open(f"{bench}/reference.genotype.txt").read()
geno = {k: ast.literal_eval(re.search(k + r"=(\[[^\]]*\])", text).group(1)) for k in ("normal", "reduce")}
net = td.Network(16, 5, geno=geno).eval()
x = torch.randn(64, 1, 28, 28)
with torch.no_grad():
    print(f"eval forward, batch 64: {ms(lambda: net(x), 10):.1f} ms")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(10):
            net(x)
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
