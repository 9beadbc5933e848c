"""The benchmark command, its helpers, and the CPU form of DCGAN's stride-2 convolutions."""

import functools
import json
import re
import subprocess
import sys
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO_ROOT, subprocess_env
from configs import tiny
from gan_jax.training import family
from gan_jax import bench, cpu_peak, device_costs
from gan_jax.models import fast_conv


# What the command's tests time: the table and JSON are the point, not the figures, so 8 px
# (G and D of one convolution each: less to compile), one timed window per row, few images.
SMALL = ("--config.data.resolution=8", "--repeats", "1", "--num_images", "64")


def run_bench(*args, check=True):
  # One CPU device, compiled without LLVM's optimisations: the rows are checked, not timed.
  env = subprocess_env(1)
  result = subprocess.run([sys.executable, "-m", "gan_jax.bench", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
  if check:
    assert result.returncode == 0, result.stderr[-3000:]
  return result


def test_bench_cli_prints_table_and_writes_json(tmp_path):
  pytest.importorskip("tensorflow", reason="the tfdata rows need TensorFlow")
  out = tmp_path / "out.json"
  # float32/bfloat16: bfloat16 conv operands (train.dtype=bfloat16 trains in test_techniques)
  dtypes = ("float32/float32", "float32/bfloat16")
  result = run_bench("--config", "configs/tiny.py", *SMALL, "--batch", "16",
                     "--dtype", ",".join(dtypes), "--paths", "tfdata,numpy,device,model",
                     "--steps", "3", "--warmup", "1", "--peak_gflops", "50",
                     "--json", str(out), "--profile", str(tmp_path / "trace"))
  assert bench.HEADER in result.stdout
  # One profiler trace per (batch, dtype), of the model path.
  for dtype in ("float32", "float32_conv_bfloat16"):
    assert list((tmp_path / "trace" / f"b16_{dtype}_scan1").rglob("*.xplane.pb")), dtype
    # ... with the step's HLO, which benchmarks/cpu_profile.py maps the thunks with.
    assert "ENTRY" in (tmp_path / "trace" / f"b16_{dtype}_scan1" / "step.hlo.txt").read_text()
  data = json.loads(out.read_text())
  assert data["platform"] == "cpu" and data["num_devices"] == 1
  assert data["steps"] == 3 and data["scan"] == 1
  rows = data["rows"]
  # The model row first, whatever the order asked for: the others compare with it.
  assert [(r["dtype"], r["path"]) for r in rows] == [
      (label, path) for label in ("float32", "float32/bfloat16")
      for path in ("model", "device", "numpy", "tfdata")]
  for row in rows:
    assert row["batch"] == 16
    assert row["img_per_s"] > 0 and row["ms_per_step"] > 0
    assert row["flops_per_image"] > 0 and row["tflops_per_s"] > 0
    # The peak given by hand replaces the derived one.
    assert row["peak_basis"] == "50 GFLOP/s given by hand"
    assert row["mfu"] == pytest.approx(row["tflops_per_s"] * 1e3 / 50)
    assert row["compiled_memory_bytes"] > 0
    assert (row["fraction_of_model"] is None) == (row["path"] == "model")
    assert row["path"] == "model" or row["fraction_of_model"] > 0
  # Context line, header, rows, the peak the MFU column divides by.
  assert result.stdout.strip().splitlines()[2 + len(rows):] == [
      "MFU: the share of the peak 50 GFLOP/s given by hand"]


def test_bench_rejects_bad_options_with_one_line():
  result = run_bench("--config", "configs/tiny.py", "--dtype", "float16,float32/int8", "--paths",
                     "disk", check=False)
  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  assert "--dtype 'float16' is not one of float32, bfloat16" in result.stderr
  assert "--dtype 'float32/int8' is not one of" in result.stderr
  assert "--paths 'disk' is not one of model, device, numpy, tfdata" in result.stderr
  result = run_bench("--config", "configs/celeba64.py", "--config.model.conv_imp=im2col",
                     check=False)
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith(
      "error: --config.model.conv_imp: the config has no option 'model.conv_imp'. "
      "Did you mean --config.model.conv_impl?")


def test_bench_times_the_faces_training_reads(tmp_path, monkeypatch, capsys):
  """With --config.data.path, the data set of the device/numpy rows is the run's training split:
  data.holdout's faces are not in it (they are what evaluation compares with)."""
  faces = np.random.default_rng(0).integers(0, 256, (60, 8, 8, 3), np.uint8)
  np.save(tmp_path / "faces.npy", faces)
  config = tiny.get_config()
  config.data.path, config.data.resolution = str(tmp_path / "faces.npy"), 8
  config.data.holdout = 10
  timed = []

  def record_images(config, batch, dtype, paths, devices, images, *args):
    timed.append(np.asarray(images))
    return iter(())
  monkeypatch.setattr(bench, "bench_config", record_images)  # no compiling: only the data
  bench.run(config, [16], ["float32"], ["numpy"], 1, steps=1, warmup=0, repeats=1, scan=1,
            num_images=64)
  np.testing.assert_array_equal(timed[0], faces[:50])
  assert "50 images of 8 px" in capsys.readouterr().out


def test_bench_imports_neither_tensorflow_nor_clu():
  code = ("import sys\n"
          "from gan_jax import bench, parallel, train\n"
          "from gan_jax.data import pipeline, prepare\n"
          "from gan_jax.training import gan, step\n"
          "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
          "('tensorflow', 'tensorflow_datasets', 'clu'))\n"
          "assert not bad, bad\n")
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]


def test_peak_flops_by_device_kind():
  def gpu(kind):
    return types.SimpleNamespace(platform="gpu", device_kind=kind)
  assert device_costs.peak_flops(gpu("NVIDIA H100 80GB HBM3"), "bfloat16") == (989.4e12, "H100 bf16")
  assert device_costs.peak_flops(gpu("NVIDIA H100 PCIe"), "float32") == (378.0e12, "H100 PCIe tf32")
  assert device_costs.peak_flops(gpu("NVIDIA H200"), "bfloat16")[0] == 989.4e12
  assert device_costs.peak_flops(gpu("NVIDIA A100-SXM4-80GB"), "bfloat16")[0] == 312.0e12
  assert device_costs.peak_flops(gpu("Some Future GPU"), "bfloat16")[0] is None
  assert device_costs.peak_flops(types.SimpleNamespace(platform="tpu", device_kind="v5"),
                                 "float32") == (None, "n/a (tpu)")


def _cpuinfo(vendor, family, flags, mhz="2600.000"):
  return (f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\n"
          f"model name\t: Some CPU\ncpu MHz\t\t: {mhz}\nflags\t\t: {flags}\n\n"
          "processor\t: 1\nvendor_id\t: other\n")


@pytest.mark.parametrize("vendor, family, flags, fp32, bf16", [
    ("GenuineIntel", 6, "fma avx2 avx512f avx512_bf16 amx_bf16", 64, 2048),  # Sapphire Rapids
    ("GenuineIntel", 6, "fma avx2 avx512f avx512_bf16", 64, 128),            # AVX512-BF16, no AMX
    ("GenuineIntel", 6, "fma avx2", 32, 32),                                 # AVX2: no bf16 dots
    ("AuthenticAMD", 25, "fma avx2 avx512f avx512_bf16", 32, 64),            # Zen 4
    ("AuthenticAMD", 26, "fma avx2 avx512f avx512_bf16", 64, 128),           # Zen 5
    ("AuthenticAMD", 23, "fma avx2", 32, 32),                                # Zen 2
])
def test_cpu_peak_from_vendor_family_and_flags(vendor, family, flags, fp32, bf16):
  peak = cpu_peak.derive(_cpuinfo(vendor, family, flags), cores=2)
  assert (peak.fp32_per_cycle, peak.bf16_per_cycle) == (fp32, bf16)
  assert peak.flops("float32") == pytest.approx(2 * fp32 * 2.6e9)
  assert peak.flops("bfloat16") == pytest.approx(2 * bf16 * 2.6e9)
  assert peak.basis("float32") == f"2 cores x {fp32} fp32 FMA FLOP/cycle x 2.60 GHz"
  # cpufreq's maximum, where the kernel has one, is the clock.
  assert cpu_peak.derive(_cpuinfo(vendor, family, flags), 2, max_khz=3_700_000).ghz == 3.7


def test_cpu_peak_unknown_core_asks_for_it_by_hand(monkeypatch):
  peak = cpu_peak.derive(_cpuinfo("ARM", 0, "fp asimd"), cores=4)
  assert peak.flops("float32") is None and "--peak_gflops" in peak.basis("float32")
  # bench's CPU rows divide by this machine's derived peak.
  monkeypatch.setattr(cpu_peak, "this_cpu", lambda: peak)
  cpu = types.SimpleNamespace(platform="cpu", device_kind="cpu")
  assert device_costs.peak_flops(cpu, "float32") == (None, peak.basis("float32"))


def test_scan_steps_equals_repeated_calls():
  """K iterations in one lax.scan call end in the same state as K calls of the step."""
  def step(state, batch, key):
    state = state * 0.5 + jnp.sum(batch) + jax.random.uniform(key)
    return state, {"value": state}

  state, batch, key = jnp.float32(1.0), jnp.arange(4.0), jax.random.key(0)
  expected = state
  for _ in range(3):
    expected, _ = step(expected, batch, key)
  scanned, metrics = jax.jit(bench.scan_steps(step, 3))(state, batch, key)
  np.testing.assert_allclose(scanned, expected, rtol=1e-6)
  np.testing.assert_allclose(metrics["value"], expected, rtol=1e-6)

  stacked = jnp.arange(12.0)  # three batches of four, one per iteration
  expected = state
  for i in range(3):
    expected, _ = step(expected, stacked[4 * i:4 * (i + 1)], key)
  scanned, _ = jax.jit(bench.scan_steps(step, 3, stacked=True))(state, stacked, key)
  np.testing.assert_allclose(scanned, expected, rtol=1e-6)
  assert bench.scan_steps(step, 1) is step


def _grads(module, params, x):
  return jax.grad(lambda p, x: jnp.sum(jnp.sin(module.apply(p, x))), (0, 1))(params, x)


# (2, 4, 4, 24) -> 3 channels: few outputs, the shifted-sums (col2im) form of G's RGB layer.
# (1, 1, 1, 4): an odd number of pixel rows (the kernel gradient's other contraction).
@pytest.mark.parametrize("shape,features", [((2, 8, 8, 5), 7), ((3, 2, 2, 4), 7), ((2, 6, 6, 3), 7),
                                            ((2, 4, 4, 24), 3), ((1, 1, 1, 4), 7)])
def test_conv_transpose_2x_matches_flax(shape, features):
  init = nn.initializers.normal(0.5)
  x = jax.random.normal(jax.random.key(0), shape)
  reference = nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME",
                               kernel_init=init, bias_init=init)
  fast = fast_conv.ConvTranspose2x(features, kernel_init=init, bias_init=init)
  params = reference.init(jax.random.key(1), x)
  # Same parameter names, shapes and initial values: checkpoints and seeds carry over.
  assert jax.tree.all(jax.tree.map(np.array_equal, params, fast.init(jax.random.key(1), x)))
  np.testing.assert_allclose(fast.apply(params, x), reference.apply(params, x),
                             rtol=1e-5, atol=1e-5)
  for got, want in zip(jax.tree.leaves(_grads(fast, params, x)),
                       jax.tree.leaves(_grads(reference, params, x))):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("strides,shape", [((2, 2), (2, 8, 8, 5)), ((2, 2), (3, 2, 2, 4)),
                                           ((1, 1), (2, 6, 6, 3)), ((2, 2), (2, 5, 5, 3))])
def test_conv_general_dilated_matches_lax(strides, shape):
  init = nn.initializers.normal(0.5)
  x = jax.random.normal(jax.random.key(0), shape)
  kwargs = dict(features=6, kernel_size=(4, 4), strides=strides, padding="SAME",
                kernel_init=init, bias_init=init)
  reference = nn.Conv(**kwargs)
  fast = nn.Conv(**kwargs, conv_general_dilated=fast_conv.conv_general_dilated)
  params = reference.init(jax.random.key(1), x)
  np.testing.assert_allclose(fast.apply(params, x), reference.apply(params, x),
                             rtol=1e-5, atol=1e-5)
  for got, want in zip(jax.tree.leaves(_grads(fast, params, x)),
                       jax.tree.leaves(_grads(reference, params, x))):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def _bfloat16_rounded(tree):
  return jax.tree.map(lambda a: a.astype(jnp.bfloat16).astype(jnp.float32), tree)


@pytest.mark.parametrize("transpose", [False, True])
def test_bfloat16_operands_are_summed_in_float32(transpose):
  """operand_dtype=bfloat16: the products see bfloat16-rounded inputs and weights and sum
  in float32, so the output equals the float32 layer on rounded values (to float32
  rounding), far closer than bfloat16 results would be; gradients keep float32."""
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 16))
  if transpose:
    make = lambda **kw: fast_conv.ConvTranspose2x(8, use_bias=False, **kw)
  else:
    make = lambda **kw: nn.Conv(8, (4, 4), strides=(2, 2), padding="SAME", use_bias=False,
                                conv_general_dilated=functools.partial(
                                    fast_conv.conv_general_dilated, **kw))
  mixed = make(operand_dtype=jnp.bfloat16)
  plain = make()
  params = plain.init(jax.random.key(1), x)
  y = mixed.apply(params, x)
  assert y.dtype == jnp.float32
  want = plain.apply(_bfloat16_rounded(params), _bfloat16_rounded(x))
  np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
  assert np.abs(y - plain.apply(params, x)).max() > 1e-4  # the rounding is really there
  for got, full in zip(jax.tree.leaves(_grads(mixed, params, x)),
                       jax.tree.leaves(_grads(plain, params, x))):
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, full, rtol=0.05, atol=0.05 * np.abs(full).max())


def test_cpu_gradients_have_no_dilated_convolutions():
  """XLA:CPU runs dilated convolutions through a slow loop; the CPU form has none."""
  x = jnp.ones((2, 8, 8, 4))
  up = fast_conv.ConvTranspose2x(6)
  down = nn.Conv(6, (4, 4), strides=(2, 2), padding="SAME",
                 conv_general_dilated=fast_conv.conv_general_dilated)
  for module in (up, down):
    params = module.init(jax.random.key(0), x)
    grad = jax.jit(lambda p, x, m=module: jax.grad(lambda p, x: jnp.sum(m.apply(p, x) ** 2),
                                                   (0, 1))(p, x))
    hlo = grad.lower(params, x).compile().as_text()
    assert "lhs_dilate" not in hlo and "rhs_dilate" not in hlo


def _tiny_models(**overrides):
  """configs/tiny.py's (generator, discriminator) with `overrides` ({"model.x": v}), two
  latents and G's initial variables."""
  from configs import tiny  # pylint: disable=import-outside-toplevel
  config = tiny.get_config()
  config.update_from_flattened_dict(overrides)
  generator, discriminator = family.build_networks(config)
  z = jnp.ones((2, config.model.latent_dim))
  return generator, discriminator, z, generator.init(jax.random.key(0), z, train=False)


def _gan_gradient(conv_impl):
  """jit(grad) of a tiny D(G(z)) built with `model.conv_impl`, and its arguments."""
  generator, discriminator, z, g_vars = _tiny_models(**{"model.conv_impl": conv_impl})
  d_vars = discriminator.init(jax.random.key(1), generator.apply(g_vars, z, train=False),
                              train=False)

  def loss(g_params, d_params):
    images = generator.apply({**g_vars, "params": g_params}, z, train=False)
    return jnp.sum(discriminator.apply({**d_vars, "params": d_params}, images, train=False))

  return jax.jit(jax.grad(loss, (0, 1))), (g_vars["params"], d_vars["params"])


def test_conv_impl_decides_the_gpu_program():
  """Lowered for CUDA (no GPU needed): `auto` leaves G's transposed convolutions and the
  gradients to cuDNN (dilated convolutions); `im2col` has no convolution at all;
  `im2col_rgb` keeps cuDNN for the inner layers only, none of whose operands has 3
  channels. On the CPU all are the same matrix products, so the same values."""
  values = {}
  for impl in ("auto", "im2col", "im2col_rgb"):
    grad, args = _gan_gradient(impl)
    cuda = jax.export.export(grad, platforms=["cuda"])(*args).mlir_module()
    convolutions = [line for line in cuda.splitlines() if "stablehlo.convolution" in line]
    assert bool(convolutions) == (impl != "im2col"), impl
    assert ("lhs_dilate" in cuda) == (impl != "im2col"), impl
    with_rgb = [line for line in convolutions if re.search(r"tensor<(\d+x)*3x", line)]
    assert bool(with_rgb) == (impl == "auto"), (impl, with_rgb)
    values[impl] = jax.tree.leaves(grad(*args))
  for impl in ("im2col", "im2col_rgb"):
    for auto, other in zip(values["auto"], values[impl]):
      np.testing.assert_array_equal(auto, other)


def test_rgb_layer_has_no_scatter():
  """G's RGB layer (few output channels: the shifted-sums form) is slices, pads and adds:
  GPUs ran an earlier form's 16 scatter-adds as separate slow kernels (docs/benchmarks.md)."""
  x, kernel = jnp.ones((2, 4, 4, 24)), jnp.ones((4, 4, 24, 3))
  grad = jax.grad(lambda x, k: jnp.sum(fast_conv.conv_transpose_stride2(x, k, impl="im2col") ** 2),
                  (0, 1))
  program = jax.jit(grad).lower(x, kernel).as_text()
  assert "dot_general" in program and "scatter" not in program


def test_conv_dtype_reaches_the_gpu_program():
  """train.conv_dtype=bfloat16 lowered for CUDA: cuDNN gets bfloat16 operands and a float32
  result type, while the activations around it stay float32."""
  generator, _, z, variables = _tiny_models(**{"train.conv_dtype": "bfloat16"})
  apply = jax.jit(lambda v, z: generator.apply(v, z, train=False))
  cuda = jax.export.export(apply, platforms=["cuda"])(variables, z).mlir_module()
  convolutions = [line for line in cuda.splitlines() if "stablehlo.convolution" in line]
  assert convolutions
  for line in convolutions:
    assert re.search(r"\(tensor<\S*xbf16>, tensor<\S*xbf16>\) -> tensor<\S*xf32>", line), line
  assert apply(variables, z).dtype == jnp.float32


def test_unknown_conv_impl_is_refused():
  with pytest.raises(ValueError, match="conv impl 'cudnn' is not one of auto, im2col, im2col_rgb"):
    fast_conv.conv_transpose_stride2(jnp.ones((1, 2, 2, 3)), jnp.ones((4, 4, 3, 2)),
                                     impl="cudnn")
