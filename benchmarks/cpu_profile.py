"""Where a CPU step's time goes: per layer and per pass (forward, input gradient, weight gradient).

  python -m gan_jax.bench --config configs/resnet32.py --batch 64 --paths model --steps 5 \
      --profile /tmp/prof
  python benchmarks/cpu_profile.py /tmp/prof --iterations 5 [--top 30]

XLA:CPU runs a step as a sequence of thunks (one per fusion, convolution, matrix product,
copy), and the jax.profiler trace names each thunk after its HLO instruction. `bench
--profile` writes the compiled step's HLO text beside each trace (step.hlo.txt); this
script maps every thunk to the JAX op it came from (the HLO metadata's name stack, e.g.
`transpose(jvp(Discriminator))/down0/conv1_sn/.../conv_general_dilated`) and sums its CPU
time (both worker threads together) by network, layer and pass:

- forward: an op outside any `transpose(...)` (the forwards of both updates);
- input grad / weight grad: a convolution or matrix product inside `transpose(...)` whose
  output is smaller than both operands is a weight gradient (it sums over the batch and the
  pixels), any other an input gradient;
- other: element-wise fusions, copies and transposes (a backward one says so).

Reads the .xplane.pb files with jax.profiler.ProfileData, no TensorFlow needed.
"""

from __future__ import annotations

import collections
import math
import pathlib
import re

from jax.profiler import ProfileData

import profile_summary  # benchmarks/, beside this script

_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (\S+?)(?:\{[^}]*\})? (\w[\w\-]*)\((.*)$")
_COMPUTATION = re.compile(r"^%([\w.\-]+) \((.*)\) -> (.*) \{$")
_SHAPE = re.compile(r"[a-z]+\d*\[([\d,]*)\]")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_CALLS = re.compile(r"calls=%([\w.\-]+)")
_PRODUCTS = ("convolution", "dot")


def _elements(shape: str) -> int:
  match = _SHAPE.search(shape)
  if not match:
    return 0
  return math.prod(int(d) for d in match.group(1).split(",") if d)


class Hlo:
  """The compiled module's instructions: name -> (opcode, output elements, operand elements,
  op_name), with a fusion described by the convolution or product inside it."""

  def __init__(self, text: str):
    self.ops: dict[str, tuple[str, int, list[int], str]] = {}
    computations: dict[str, list[tuple[str, int, list[int], str]]] = collections.defaultdict(list)
    shapes: dict[str, int] = {}
    current = None
    lines = text.splitlines()
    for line in lines:  # first pass: every instruction's output size
      match = _INSTRUCTION.match(line)
      if match:
        shapes[match.group(1)] = _elements(match.group(2))
    for line in lines:
      head = _COMPUTATION.match(line) or (line.startswith("ENTRY") and line)
      if head:
        current = head.group(1) if not isinstance(head, str) else "ENTRY"
        continue
      match = _INSTRUCTION.match(line)
      if not match:
        continue
      name, shape, opcode, rest = match.groups()
      operands = [shapes.get(o, 0) for o in re.findall(r"%([\w.\-]+)", rest.split("),")[0])]
      op_name = (_OP_NAME.search(rest) or [None, ""])[1]
      record = (opcode, _elements(shape), operands, op_name, _CALLS.search(rest))
      computations[current].append(record)
      self.ops[name] = record
    self._computations = computations

  def describe(self, name: str) -> tuple[str, str]:
    """(op_name, kind) of the thunk `name`; kind is conv, dot or other."""
    opcode, out, operands, op_name, calls = self.ops.get(name, ("?", 0, [], "", None))
    inner = self._computations.get(calls.group(1), []) if calls else []
    for i_opcode, i_out, i_operands, i_op_name, _ in inner:  # a fusion: its product decides
      if i_opcode in _PRODUCTS:
        return i_op_name or op_name, _product_pass(i_op_name or op_name, i_out, i_operands)
    if not op_name:
      op_name = next((o for *_, o, _ in inner if o), "")
    if opcode in _PRODUCTS:
      return op_name, _product_pass(op_name, out, operands)
    return op_name, "other (bwd)" if "transpose(" in op_name else "other"


def _product_pass(op_name: str, out: int, operands: list[int]) -> str:
  weight_grad = bool(operands) and out < min(operands)
  if not op_name:  # made by an XLA pass without a JAX name: its sizes still tell a weight grad
    return "weight grad" if weight_grad else "fwd/input grad"
  if "transpose(" not in op_name:
    return "forward"
  return "weight grad" if weight_grad else "input grad"


def layer_of(op_name: str) -> str:
  """'transpose(jvp(Discriminator))/down0/conv1_sn/conv1.layer_forward/conv1/conv_general_dilated'
  -> 'D down0/conv1'; ops outside the networks (losses, optimisers) -> their first names."""
  parts = op_name.removeprefix("jit(train_step)/").split("/")
  nets = {"Generator": "G", "Discriminator": "D", "Encoder": "E"}
  for i, part in enumerate(parts):
    net = next((short for full, short in nets.items() if full in part), None)
    if net:
      # Module names only: not the spectral-norm wrapper, lax.platform_dependent's
      # cond/branch_N_fun, einsum specs or other ops' names.
      layers = [p for p in parts[i + 1:-1] if "." not in p and not p.endswith("_sn")
                and "(" not in p and "->" not in p and p != "cond"
                and not p.startswith("branch_")]
      return f"{net} {'/'.join(dict.fromkeys(layers)) or '(top)'}"
  return "step " + "/".join(p for p in parts[:2] if p) if op_name else "(unnamed)"


def summarise(xplane: pathlib.Path, hlo: Hlo, label: str, iterations: int, top: int) -> None:
  data = ProfileData.from_file(str(xplane))
  by_layer, by_pass = collections.Counter(), collections.Counter()
  total = 0.0
  for plane in data.planes:
    if not plane.name.startswith("/host:CPU"):
      continue
    for line in plane.lines:
      if not line.name.startswith(("tf_XLAEigen", "tf_XLAPjRtCpuClient")):
        continue
      for event in line.events:
        if event.name.startswith("ThunkExecutor") or event.name not in hlo.ops:
          continue
        op_name, kind = hlo.describe(event.name)
        ms = event.duration_ns / 1e6 / iterations
        by_layer[(layer_of(op_name), kind)] += ms
        by_pass[kind] += ms
        total += ms
  print(f"== {label}: {total:,.1f} CPU-ms per iteration in XLA thunks (both threads)")
  print(f"{'pass':14s} {'CPU-ms':>8s} {'share':>6s}")
  for kind, ms in by_pass.most_common():
    print(f"{kind:14s} {ms:8.1f} {ms / total:6.1%}")
  print(f"top {top} (layer, pass): CPU-ms per iteration, share")
  for (layer, kind), ms in by_layer.most_common(top):
    print(f"{ms:8.1f} {ms / total:6.1%}  {layer:32s} {kind}")


def main() -> None:
  args = profile_summary.parse_args(__doc__.splitlines()[0], top=30)
  for xplane, run_dir in profile_summary.traces(args.trace_dir):
    hlo_file = args.trace_dir / run_dir / "step.hlo.txt"
    if not hlo_file.exists():
      raise SystemExit(f"no {hlo_file}: profile with this version of gan_jax.bench")
    summarise(xplane, Hlo(hlo_file.read_text()), run_dir, args.iterations, args.top)


if __name__ == "__main__":
  main()
