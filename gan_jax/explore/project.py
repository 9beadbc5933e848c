"""Project a real face into the generator's latent space.

  python -m gan_jax.project --workdir runs/faces --image face.jpg --out projected/

Finds z whose image G(z) matches the photo (cropped and resized as the
training data was) by running Adam on z from several random starts at once and
keeping the best. The loss is pixel MSE plus a feature term (--feature_loss):
  downsampled    MSE of 2x, 4x, ... average-pooled images (default): matches
                 colours and layout first, which smooths the landscape;
  discriminator  MSE of the trained D's convolution outputs, each layer
                 normalised by the target's feature energy;
  none           pixel MSE only.
A small penalty keeps |z|^2 / latent_dim near 1, where training latents live,
so projected latents interpolate well. For a VAE-GAN run (model.name=vaegan),
the first restart starts from the encoder's latent of the photo, the others
from random latents, and the best is kept as always.

Writes into --out: STEM_target.png, STEM_projection.png, STEM_compare.png
(the two side by side) and STEM.npy (the latent, shape (latent_dim,)), which
`gan_jax.interpolate --latents a.npy,b.npy` accepts as keyframes.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gan_jax import images as image_lib
from gan_jax.explore import loader
from gan_jax.explore import pictures
from gan_jax.explore import latents as latent_lib
from gan_jax import errors
from gan_jax import cli

FEATURE_LOSSES = ("downsampled", "discriminator", "none")


@dataclasses.dataclass(frozen=True)
class Projection:
  latent: np.ndarray        # (latent_dim,) float32: the best restart's z
  image: np.ndarray         # (H, W, 3) float32 in [-1, 1]: G(latent)
  mse: float                # pixel MSE between image and target, in [-1, 1] units
  restart_losses: np.ndarray  # (restarts,) final objective of every restart
  loss_curve: np.ndarray    # (steps,) objective of the best restart per step


def downsampled_mse(images: jax.Array, target: jax.Array) -> jax.Array:
  """Per-image mean of the MSEs at 1/2, 1/4, ... resolution (down to 4 px)."""
  losses = []
  while images.shape[1] > 4 and images.shape[1] % 2 == 0:
    images = pool2(images)
    target = pool2(target)
    losses.append(jnp.mean((images - target) ** 2, axis=(1, 2, 3)))
  return jnp.mean(jnp.stack(losses), axis=0) if losses else jnp.zeros(images.shape[0])


def pool2(images: jax.Array) -> jax.Array:
  n, h, w, c = images.shape
  return images.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def discriminator_mse(model: loader.TrainedGAN, images: jax.Array, target: jax.Array
                      ) -> jax.Array:
  """Per-image mean over D's conv layers of feature MSE / target feature energy."""
  fake_features = model.discriminator_features(images)
  target_features = model.discriminator_features(target)
  losses = []
  for fake, real in zip(fake_features, target_features):
    energy = jnp.mean(real ** 2) + 1e-8
    losses.append(jnp.mean((fake - real) ** 2, axis=tuple(range(1, fake.ndim))) / energy)
  return jnp.mean(jnp.stack(losses), axis=0)


def objective(model: loader.TrainedGAN, z: jax.Array, target: jax.Array, feature_loss: str,
              feature_weight: float, latent_weight: float) -> jax.Array:
  """Per-restart loss (R,) of latents z (R, latent_dim) against one target (1, H, W, 3)."""
  images = model.sample(z)
  loss = jnp.mean((images - target) ** 2, axis=(1, 2, 3))
  if feature_loss == "downsampled":
    loss += feature_weight * downsampled_mse(images, jnp.broadcast_to(target, images.shape))
  elif feature_loss == "discriminator":
    loss += feature_weight * discriminator_mse(model, images, target)
  loss += latent_weight * (jnp.mean(z ** 2, axis=-1) - 1.0) ** 2
  return loss


def project(model: loader.TrainedGAN, target, steps: int = 500, restarts: int = 4,
            learning_rate: float = 0.1, feature_loss: str = "downsampled",
            feature_weight: float = 1.0, latent_weight: float = 0.01, seed: int = 0
            ) -> Projection:
  """Fit latents to `target` (uint8 or [-1, 1] float (H, W, 3)) from `restarts` random starts."""
  if feature_loss not in FEATURE_LOSSES:
    raise errors.ExploreError(f"unknown --feature_loss {feature_loss!r}; use one of "
                                f"{', '.join(FEATURE_LOSSES)}")
  if steps < 1 or restarts < 1:
    raise errors.ExploreError(f"--steps and --restarts must be >= 1, got {steps} and {restarts}")
  expected = (model.resolution, model.resolution, 3)
  target = image_lib.to_float(target)
  if target.shape != expected:
    raise errors.ExploreError(f"target image has shape {target.shape}; "
                                f"the model makes {expected}")
  if feature_loss == "discriminator" and model.state.d_params is None:
    raise errors.ExploreError("--feature_loss discriminator needs the model loaded with its "
                                "discriminator")
  z0 = np.array(latent_lib.latents(seed, restarts, model.latent_dim))  # a writable copy
  if model.has_encoder:  # a VAE-GAN: the encoder's guess is the first start
    z0[0] = model.encode(target[None], batch_size=1)[0]
  loss_fn = functools.partial(objective, model, feature_loss=feature_loss,
                              feature_weight=feature_weight, latent_weight=latent_weight)
  optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))

  @jax.jit
  def fit(z, target):
    # The restarts are independent: summing their losses gives each its own
    # gradient, and Adam scales every coordinate separately.
    def total(z):
      per_restart = loss_fn(z, target)
      return jnp.sum(per_restart), per_restart

    def step(carry, _):
      z, opt_state = carry
      (_, per_restart), grads = jax.value_and_grad(total, has_aux=True)(z)
      updates, opt_state = optimizer.update(grads, opt_state, z)
      return (optax.apply_updates(z, updates), opt_state), per_restart

    (z, _), curve = jax.lax.scan(step, (z, optimizer.init(z)), length=steps)
    return z, loss_fn(z, target), curve

  z, final, curve = jax.device_get(fit(jnp.asarray(z0), jnp.asarray(target[None])))
  best = int(np.argmin(final))
  image = model.generate(z[best:best + 1], batch_size=1)[0]
  return Projection(latent=np.asarray(z[best], np.float32), image=image,
                    mse=float(np.mean((image - target) ** 2)),
                    restart_losses=np.asarray(final), loss_curve=np.asarray(curve[:, best]))


def run(args: argparse.Namespace) -> None:
  model = loader.load(args.workdir, args.step, discriminator=args.feature_loss == "discriminator",
                      encoder=None)  # a VAE-GAN's encoder gives the first start
  print(loader.describe(model, args.workdir))
  if model.has_encoder:
    print("restart 0 starts from the encoder's latent of the photo")
  crop = args.crop or model.config.data.crop
  target = pictures.load_target(args.image, model.resolution, crop)
  result = project(model, target, args.steps, args.restarts, args.learning_rate,
                   args.feature_loss, args.feature_weight, args.latent_weight, args.seed)
  out, stem = pathlib.Path(args.out), pathlib.Path(args.image).stem
  pictures.save_png(out / f"{stem}_target.png", target)
  pictures.save_png(out / f"{stem}_projection.png", result.image)
  compare = image_lib.make_grid(pictures.zoom(np.stack([image_lib.to_uint8(target),
                                                        image_lib.to_uint8(result.image)]),
                                              args.zoom), columns=2)
  image_lib.save_png(out / f"{stem}_compare.png", compare)
  np.save(out / f"{stem}.npy", result.latent)
  print(f"pixel MSE {result.mse:.5f} (images in [-1, 1]); restart losses "
        + " ".join(f"{loss:.5f}" for loss in result.restart_losses))
  print(f"wrote {out / stem}_target.png, _projection.png, _compare.png and {out / stem}.npy "
        f"(use it with gan_jax.interpolate --latents)")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m gan_jax.project", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  cli.add_checkpoint_arguments(parser)
  parser.add_argument("--image", required=True, help="the face photo to project")
  parser.add_argument("--out", default="projection", help="output folder")
  parser.add_argument("--crop", choices=("center", "celeba", "none"), default=None,
                      help="how to crop the photo to a square (default: the run's data.crop)")
  parser.add_argument("--steps", type=cli.positive_int, default=500, help="Adam steps")
  parser.add_argument("--restarts", type=cli.positive_int, default=4,
                      help="random starting latents optimised together; the best is kept")
  parser.add_argument("--learning_rate", type=float, default=0.1,
                      help="Adam learning rate (cosine-decayed to 0)")
  parser.add_argument("--feature_loss", choices=FEATURE_LOSSES, default="downsampled",
                      help="feature term added to pixel MSE (see above)")
  parser.add_argument("--feature_weight", type=float, default=1.0, help="weight of that term")
  parser.add_argument("--latent_weight", type=float, default=0.01,
                      help="weight of the (|z|^2/latent_dim - 1)^2 penalty")
  parser.add_argument("--seed", type=int, default=0, help="seed of the starting latents")
  parser.add_argument("--zoom", type=cli.positive_int, default=4,
                      help="upscaling of the side-by-side STEM_compare.png")
  return parser


def main(argv: list[str] | None = None) -> int:
  return cli.run_cli(build_parser(), run, argv)


if __name__ == "__main__":
  sys.exit(main())
