# Sourced by the GPU scripts: GPU machines here have jax, flax, optax and orbax but no
# ml_collections, and no network; install it from wheels/*.whl into a temporary folder
# (`pip download --no-deps ml_collections -d wheels` where pip works). Needs $python.
if ! "$python" -c "import ml_collections" 2>/dev/null; then
  if compgen -G "wheels/*.whl" >/dev/null; then
    site="$(mktemp -d)"
    "$python" -m pip install -q --no-index --no-deps --no-compile --target "$site" wheels/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "error: ml_collections is not installed and wheels/ has no wheel;" \
         "run 'pip download --no-deps ml_collections -d wheels' where pip works" >&2
    exit 1
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # gan_jax and configs/ without installing
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
