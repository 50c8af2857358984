"""asmspotter.detect.runtime: the allocator, the precision, and what the light commands load."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from asmspotter.detect.runtime import (
    MALLOC_ENV,
    cpu_flags,
    cpu_has_fast_bf16,
    resolve_precision,
)
from asmspotter.detect.tiling import predict_array, tile_spans
from asmspotter.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def _python(code: str, env: dict[str, str] | None = None) -> str:
    """Run ``code`` in a fresh interpreter (this checkout first on the path); return stdout."""
    import os

    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    for key in MALLOC_ENV:  # each case sets the allocator itself
        if env is None or key not in env:
            full.pop(key, None)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        check=True,
        capture_output=True,
        text=True,
        env=full,
        cwd=REPO,
    )
    return out.stdout.strip().splitlines()[-1]


def test_precision_choices_and_the_auto_rule(tmp_path: Path) -> None:
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("auto", "cpu") == resolve_precision(None, "cpu")
    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_has_fast_bf16() else "fp32")
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        resolve_precision("fp16", "cpu")
    # the rule: native bf16 (AVX512-BF16 or AMX) only
    assert cpu_has_fast_bf16(frozenset({"avx2", "avx512f", "avx512_bf16"}))
    assert cpu_has_fast_bf16(frozenset({"amx_bf16", "amx_tile"}))
    assert not cpu_has_fast_bf16(frozenset({"avx", "avx2", "avx512f", "avx512bw"}))
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == frozenset({"fpu", "avx2", "avx512_bf16"})
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_precision_option_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    from asmspotter.cli import build_parser
    from asmspotter.detect.loader import load_detector

    parser = build_parser()
    for cmd in (["detect", "la-pampa"], ["run"], ["evaluate-chips", "x"]):
        assert parser.parse_args([*cmd]).precision == "auto"
        assert parser.parse_args([*cmd, "--precision", "bf16"]).precision == "bf16"
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([*cmd, "--precision", "fp16"])
        assert exc.value.code == 2
    assert "invalid choice: 'fp16'" in capsys.readouterr().err
    with pytest.raises(InputError, match="unknown precision 'half'"):
        load_detector(device="cpu", precision="half")
    assert load_detector(device="cpu", precision="bf16").precision == "bf16"


def test_bf16_probabilities_agree_with_fp32_on_a_seeded_raster() -> None:
    from asmspotter.detect.card import to_model_input
    from asmspotter.detect.loader import load_detector
    from asmspotter.detect.synthetic import make_scene

    det = load_detector(device="cpu", precision="fp32")
    raw = make_scene(160, 176, seed=7, n_patches=4)
    x, valid = to_model_input(raw, "reflectance")
    kw = {"tile_size": 96, "overlap": 16, "views": "none"}
    p32 = predict_array(det.model, x, valid, precision="fp32", **kw)
    p16 = predict_array(det.model, x, valid, precision="bf16", **kw)
    assert p16.dtype == np.float32 and p32.dtype == np.float32
    assert (p32 >= 0.5).any() and (p32 < 0.5).any()  # the scene holds both classes
    assert np.abs(p16 - p32).max() < 0.05
    assert not np.array_equal(p16, p32)  # bf16 really ran
    assert ((p16 >= 0.5) == (p32 >= 0.5)).mean() >= 0.995


class _Shapes(nn.Module):
    """A per-pixel model that records the shape of every batch it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return self.conv(x)


def test_a_small_raster_is_one_tile_and_larger_ones_waste_only_the_overlap() -> None:
    model = _Shapes().eval()
    x = np.random.default_rng(3).random((3, 654, 667), dtype=np.float32) * 0.3
    predict_array(model, x, tile_size=1024, overlap=32)
    assert model.shapes == [(1, 3, 654, 667)]  # La Pampa's size: one tile, one pass
    model.shapes.clear()
    x = np.random.default_rng(4).random((3, 300, 1100), dtype=np.float32) * 0.3
    prob = predict_array(model, x, tile_size=256, overlap=16, batch_size=8)
    with torch.inference_mode():
        direct = torch.sigmoid(model(torch.from_numpy(x)[None]))[0, 0].numpy()
    np.testing.assert_allclose(prob, direct, atol=1e-5)  # no seams
    model.shapes.pop()
    fed = sum(s[0] * s[2] * s[3] for s in model.shapes)
    rows, cols = tile_spans(300, 256, 16), tile_spans(1100, 256, 16)
    assert fed == sum(b - a for a, b in rows) * sum(b - a for a, b in cols)
    assert fed <= 300 * 1100 * 1.2  # old plan (end-aligned 256 px tiles): 2 x 5 x 256² = 2x


def test_the_commands_that_do_not_run_the_network_do_not_import_torch() -> None:
    code = """
        import importlib, pkgutil, sys
        from asmspotter.cli import main
        assert main(["regions"]) == 0
        for name in ("analyse", "report", "fetch", "app", "regions"):
            importlib.import_module(f"asmspotter.commands.{name}")
        for pkg in ("asmspotter.analyse", "asmspotter.report", "asmspotter.composite",
                    "asmspotter.acquire", "asmspotter.app"):
            mod = importlib.import_module(pkg)
            for info in pkgutil.walk_packages(mod.__path__, pkg + "."):
                importlib.import_module(info.name)
        light = "torch" in sys.modules
        import asmspotter.detect.model  # the network's module does load it (the check works)
        print(light, "torch" in sys.modules)
    """
    assert _python(code) == "False True"


_MALLINFO = """
    import ctypes, json, os, sys

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    from asmspotter.detect.runtime import tune_allocator
    tuned = tune_allocator() if sys.argv[-1] != "plain" else False
    before = libc.mallinfo2()
    buf = libc.malloc(64 << 20)  # an activation-sized buffer
    during = libc.mallinfo2()
    libc.free(buf)
    after = libc.mallinfo2()
    print(json.dumps({"tuned": tuned, "mmapped": during.hblkhd - before.hblkhd,
                      "heap_after_free": after.arena,
                      "env": os.environ.get("MALLOC_MMAP_MAX_")}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_the_allocator_keeps_large_buffers_in_the_heap() -> None:
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").mallinfo2  # noqa: B018
    except (OSError, AttributeError):
        pytest.skip("not glibc >= 2.33")
    tuned = json.loads(_python(_MALLINFO.replace("sys.argv[-1]", "'tuned'")))
    plain = json.loads(_python(_MALLINFO.replace("sys.argv[-1]", "'plain'")))
    # untuned, glibc maps a 64 MiB buffer and unmaps it on free (fresh zeroed pages each time)
    assert plain["mmapped"] >= 64 << 20 and plain["heap_after_free"] < 64 << 20
    assert plain["env"] is None
    # tuned, it comes from the heap and stays there for the next one; children inherit it
    assert tuned["tuned"] is True and tuned["mmapped"] == 0
    assert tuned["heap_after_free"] >= 64 << 20
    assert tuned["env"] == "0"
