"""The VAE-GAN (model.name=vaegan): networks, its loss terms, its step, resume, learning on real
faces, and the commands that use its encoder (reconstruct, interpolate --images, project)."""

import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from conftest import MAIN_WITHOUT_TENSORFLOW, REPO_ROOT, pixel_frechet, subprocess_env, tiny_config
from configs import tiny
from gan_jax import checkpoint, parallel
from gan_jax import images as image_lib
from gan_jax.data import pipeline as input_pipeline
from gan_jax.errors import ConfigError
from gan_jax.explore import interpolate, loader, pictures, project, reconstruct
from gan_jax.models import vaegan as vaegan_models
from gan_jax.training import family
from gan_jax.training import state as gan_state
from gan_jax.training.vaegan import VAEGANState
from gan_jax.training.vaegan_step import feature_reconstruction, kl_divergence, posterior_sample

TRAIN_STEPS = 300   # of the learning run; it saves at half and at the end
NUM_TRAIN = 1792    # faces16[:NUM_TRAIN] train, the rest of the 2,000 are held out


def fake_faces(n, resolution=16, seed=0):
  return np.random.RandomState(seed).randint(0, 256, (n, resolution, resolution, 3), np.uint8)


def leaves(state):
  return [np.asarray(x) for x in jax.tree.leaves(state.replace(key=jax.random.key_data(state.key)))]


# --- the networks ---

@pytest.mark.parametrize("resolution, feature_shape", [(16, (8, 8, 8)), (32, (8, 8, 16))])
def test_encoder_and_discriminator_feature_shapes(resolution, feature_shape):
  config = tiny_config(model__name="vaegan")
  config.data.resolution = resolution
  encoder = vaegan_models.build_encoder(config)
  _, discriminator = family.build_networks(config)
  x = jnp.asarray(image_lib.to_float(fake_faces(2, resolution)))
  mean, log_variance = encoder.apply(encoder.init(jax.random.key(0), x, train=False), x,
                                     train=False)
  assert mean.shape == log_variance.shape == (2, config.model.latent_dim)
  assert mean.dtype == jnp.float32
  d_vars = discriminator.init(jax.random.key(1), x, train=False)
  logits, features = discriminator.apply(d_vars, x, train=False, features=2)  # the default
  assert logits.shape == (2,) and features.shape == (2,) + feature_shape
  # The default call is unchanged: the same logits, and only them.
  np.testing.assert_array_equal(discriminator.apply(d_vars, x, train=False), logits)


def test_check_refuses_what_the_step_cannot_do():
  config = tiny_config(model__name="vaegan")
  config.train.d_steps = 2
  with pytest.raises(ConfigError, match=r"^model.name=vaegan does not train with train.d_steps; "):
    family.check(config)


def test_state_adds_the_encoder_and_keeps_the_gans_streams():
  config = tiny_config(model__name="vaegan")
  vaegan, gan = family.bundle(config), family.bundle(tiny.get_config())
  state = family.create_state(vaegan, jax.random.key(0))
  assert isinstance(state, VAEGANState) and state.e_params and state.e_opt_state
  plain = gan_state.create_state(gan, jax.random.key(0))
  # G, D and the run key come from the same streams as a plain GAN's.
  for a, b in zip(leaves(plain), leaves(state)[:len(leaves(plain))]):
    np.testing.assert_array_equal(a, b)
  tree = checkpoint.state_to_tree(state)
  assert isinstance(checkpoint.tree_to_state(tree, family.state_class("vaegan")), VAEGANState)


# --- the loss terms on known inputs ---

def test_kl_divergence_on_known_inputs():
  zeros = jnp.zeros((2, 3))
  assert float(kl_divergence(zeros, zeros)) == 0.0  # q == the prior
  assert float(kl_divergence(jnp.ones((2, 3)), zeros)) == pytest.approx(1.5)  # mean 1: 1/2 per dim
  # variance 2: (2 - 1 - ln 2) / 2 for that dimension, 0 for the one at the prior (a sum).
  log_variance = jnp.asarray([[np.log(2.0), 0.0]])
  expected = 0.5 * (2.0 - 1.0 - np.log(2.0))
  assert float(kl_divergence(jnp.zeros((1, 2)), log_variance)) == pytest.approx(expected, rel=1e-6)


def test_feature_reconstruction_and_posterior_sample_on_known_inputs():
  real = jnp.full((2, 2, 2, 4), 3.0)
  assert float(feature_reconstruction(real, real)) == 0.0
  # Half the squared distance summed over an image's 16 features, averaged over the 2 images.
  assert float(feature_reconstruction(real, jnp.ones_like(real))) == 0.5 * 4.0 * 16
  assert float(feature_reconstruction(real, real.at[0, 0, 0, 0].set(1.0))) == pytest.approx(
      0.5 * 4.0 / 2)
  z = posterior_sample(jnp.asarray([1.0, -1.0]), jnp.log(jnp.asarray([4.0, 1.0])),
                       jnp.asarray([0.5, 2.0]))
  np.testing.assert_allclose(z, [2.0, 1.0])  # mean + sigma * noise


# --- the step ---

def test_step_is_pure_and_eight_devices_equal_one():
  vaegan = family.bundle(tiny_config(model__name="vaegan"))
  step_fn = family.make_train_step(vaegan)
  runners = {"one": parallel.DataParallel(step_fn, "shard_map",
                                          parallel.make_mesh(jax.devices()[:1])),
             "eight": parallel.DataParallel(step_fn, "shard_map")}
  initial = family.create_state(vaegan, jax.random.key(0))
  results = {}
  for name, runner in (("one", runners["one"]), ("eight", runners["eight"]),
                       ("one again", runners["one"])):
    state = runner.put_state(jax.tree.map(lambda x: x.copy(), initial))
    key = runner.put_state(jax.random.key(3))
    for seed in range(2):
      state, metrics = runner.step(state, runner.put_batch(fake_faces(32, seed=seed)), key)
    results[name] = (leaves(runner.get_state(state)), runner.get_metrics(metrics))
  one_state, one_metrics = results["one"]
  assert {"recon_loss", "kl", "recon_pixel_mse", "e_updates"} <= set(one_metrics)
  assert one_metrics["e_updates"] == one_metrics["g_updates"] == one_metrics["d_updates"] == 1
  for a, b in zip(one_state, results["one again"][0]):  # pure: the same inputs, the same bits
    np.testing.assert_array_equal(a, b)
  for a, b in zip(one_state, results["eight"][0]):  # batch norm synchronised over the devices
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
  for metric, value in results["eight"][1].items():
    assert value == pytest.approx(one_metrics[metric], abs=1e-5), metric


# --- training on real faces ---

def train_in_subprocess(config, workdir, xla_cache):
  """`python -m gan_jax.main` on `config` (tiny.py plus its overrides), on ONE CPU device;
  `xla_cache`, a compilation cache the module's runs share (one at a time).

  In-process on the test's 8 fake devices, this VAE-GAN's training hung now and then
  inside an XLA CPU all-reduce with the CPU idle (one device's thread never arrived;
  2026-11-30, in CI and in a sweep script; never in the plain GAN's tests): not
  understood yet. The step's 8-device behaviour is tested above on its own; the runs
  that the learning, resume and command tests need train on one device.
  """
  overrides = [f"--config.{key}={value}" for key, value in (
      ("model.name", config.model.name), ("data.path", config.data.path),
      ("train.num_steps", config.train.num_steps), ("checkpoint_every", config.checkpoint_every),
      ("sample_every", config.sample_every), ("log_every", config.log_every))]
  env = subprocess_env(1, xla_cache)
  result = subprocess.run([sys.executable, *MAIN_WITHOUT_TENSORFLOW, "--config", "configs/tiny.py",
                           "--workdir", str(workdir), *overrides], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  return checkpoint.tree_to_state(checkpoint.restore_tree(workdir)[1], VAEGANState)


@pytest.fixture(scope="module")
def xla_cache(tmp_path_factory):
  return tmp_path_factory.mktemp("vaegan_xla_cache")


@pytest.fixture(scope="module")
def vaegan_run(faces16, xla_cache, tmp_path_factory):
  """(config, workdir, final state) of a tiny VAE-GAN trained TRAIN_STEPS steps on real faces."""
  data = tmp_path_factory.mktemp("vaegan_data") / "faces16.npy"
  np.save(data, np.asarray(faces16[:NUM_TRAIN]))
  config = tiny_config(model__name="vaegan")
  config.data.path = str(data)
  config.train.num_steps = TRAIN_STEPS
  config.checkpoint_every = config.sample_every = TRAIN_STEPS // 2
  config.log_every = TRAIN_STEPS // 3
  workdir = tmp_path_factory.mktemp("vaegan_run")
  return config, workdir, train_in_subprocess(config, workdir, xla_cache)


def heldout_mse(vaegan, state, faces):
  real = image_lib.to_float(np.asarray(faces))
  return float(jnp.mean((jax.jit(vaegan.reconstruct)(state, real) - real) ** 2))


@pytest.mark.slow
def test_samples_improve_and_terms_are_monitored(vaegan_run, faces16):
  config, workdir, final = vaegan_run
  vaegan = family.bundle(config)
  initial = family.create_state(vaegan, jax.random.key(config.seed))
  frechet = pixel_frechet(vaegan, initial, faces16), pixel_frechet(vaegan, final, faces16)
  print(f"samples' pixel Fréchet distance {frechet[0]:.2f} -> {frechet[1]:.2f} after "
        f"{TRAIN_STEPS} steps")
  assert frechet[1] < frechet[0]
  # Monitoring: the terms are logged and plotted, the reconstructions drawn beside the samples.
  records = (workdir / "metrics.jsonl").read_text()
  assert '"recon_loss"' in records and '"kl"' in records
  assert (workdir / "plots" / "vae.png").is_file()
  assert (workdir / "plots" / "vae_pixel_mse.png").is_file()
  assert (workdir / "samples" / "reconstructions" / f"step_{TRAIN_STEPS:07d}.png").is_file()


@pytest.mark.slow
def test_learns_to_reconstruct_held_out_faces(vaegan_run, faces16):
  config, _, final = vaegan_run
  vaegan, heldout = family.bundle(config), faces16[NUM_TRAIN:]
  initial = family.create_state(vaegan, jax.random.key(config.seed))
  mse = heldout_mse(vaegan, initial, heldout), heldout_mse(vaegan, final, heldout)
  print(f"held-out reconstruction MSE {mse[0]:.4f} -> {mse[1]:.4f} after {TRAIN_STEPS} steps")
  assert mse[1] <= 0.5 * mse[0]


def test_resumes_exactly(vaegan_run, xla_cache, tmp_path):
  config, workdir, final = vaegan_run
  resumed_dir = pathlib.Path(shutil.copytree(workdir, tmp_path / "run"))
  shutil.rmtree(resumed_dir / checkpoint.CHECKPOINT_DIR / str(TRAIN_STEPS))  # back to the middle
  resumed = train_in_subprocess(config, resumed_dir, xla_cache)
  assert isinstance(resumed, VAEGANState) and isinstance(final, VAEGANState)
  assert checkpoint.fingerprint(resumed) == checkpoint.fingerprint(final)


# --- the commands ---

def photos(faces_dir, count, start=5000):
  files = sorted(p for p in pathlib.Path(faces_dir).iterdir() if p.suffix.lower() == ".jpg")
  return [str(p) for p in files[start:start + count]]


def test_reconstruct_command(vaegan_run, faces_dir, faces16, tmp_path, capsys):
  _, workdir, _ = vaegan_run
  out = tmp_path / "recon"
  assert reconstruct.main(["--workdir", str(workdir), "--images", ",".join(photos(faces_dir, 3)),
                           "--out", str(out), "--columns", "2"]) == 0
  assert "pixel MSE" in capsys.readouterr().out
  assert np.load(out / "reconstructions.npy").shape == (3, 16, 16, 3)
  assert np.load(out / "latents.npy").shape == (3, 16)
  assert (out / "reconstructions.png").is_file()
  # A uint8 .npy at the model's size is read as it is.
  np.save(tmp_path / "faces.npy", np.asarray(faces16[NUM_TRAIN:NUM_TRAIN + 4]))
  assert reconstruct.main(["--workdir", str(workdir), "--images", str(tmp_path / "faces.npy"),
                           "--out", str(out)]) == 0
  assert np.load(out / "reconstructions.npy").shape == (4, 16, 16, 3)


@pytest.fixture(scope="module")
def gan_workdir(tmp_path_factory):
  """A plain DCGAN's checkpoint (step 0, untrained): a run without an encoder."""
  config = tiny.get_config()
  workdir = tmp_path_factory.mktemp("dcgan_run")
  manager = checkpoint.make_manager(workdir)
  state = gan_state.create_state(family.bundle(config), jax.random.key(0))
  checkpoint.save(manager, state, input_pipeline.pipeline_state(0, config.seed), config, step=0)
  manager.wait_until_finished()
  return workdir


def test_reconstruct_errors_are_one_line(vaegan_run, gan_workdir, tmp_path, capsys):
  _, workdir, _ = vaegan_run
  (tmp_path / "broken.jpg").write_text("not a picture")
  np.save(tmp_path / "small.npy", np.zeros((2, 8, 8, 3), np.uint8))
  cases = [
      (workdir, str(tmp_path / "missing.jpg"), f"error: image {tmp_path / 'missing.jpg'} does "
       "not exist"),
      (workdir, str(tmp_path / "broken.jpg"),
       f"error: cannot read image {tmp_path / 'broken.jpg'}"),
      (workdir, str(tmp_path / "small.npy"), f"error: {tmp_path / 'small.npy'} holds uint8 images "
       "of shape (8, 8, 3); the model takes uint8 (16, 16, 3)"),
      (gan_workdir, str(tmp_path / "small.npy"), f"error: the run in {gan_workdir} "
       "(model.name=dcgan) has no encoder; use the --workdir of a model.name=vaegan run"),
  ]
  for run_dir, images, message in cases:
    assert reconstruct.main(["--workdir", str(run_dir), "--images", images,
                             "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(message), err
    assert "Traceback" not in "\n".join(err)


def test_interpolate_between_photos_through_the_encoder(vaegan_run, faces_dir, tmp_path, capsys):
  _, workdir, _ = vaegan_run
  pair = photos(faces_dir, 2)
  out = tmp_path / "walk.png"
  assert interpolate.main(["--workdir", str(workdir), "--images", ",".join(pair),
                           "--frames", "5", "--method", "lerp", "--out", str(out)]) == 0
  assert "through the encoder" in capsys.readouterr().out
  # The ends of the walk are the reconstructions of the two photos.
  model = loader.load(workdir, encoder=True)
  ends = image_lib.to_uint8(model.generate(model.encode(model_photos(pair, model)))).astype(int)
  grid = np.asarray(Image.open(out)).astype(int)
  assert np.abs(grid[2:18, 2:18] - ends[0]).max() <= 1
  assert np.abs(grid[2:18, -18:-2] - ends[1]).max() <= 1


def model_photos(files, model):
  return pictures.load_photos(files, model.resolution, model.config.data.crop)[1]


def test_project_starts_from_the_encoders_latent(vaegan_run, faces_dir, tmp_path, capsys):
  _, workdir, _ = vaegan_run
  image = photos(faces_dir, 1)[0]
  out = tmp_path / "projected"
  assert project.main(["--workdir", str(workdir), "--image", image, "--out", str(out),
                       "--steps", "1", "--restarts", "1", "--learning_rate", "0.01"]) == 0
  assert "restart 0 starts from the encoder's latent" in capsys.readouterr().out
  model = loader.load(workdir, encoder=True)
  face = model_photos([image], model)
  latent = np.load(out / f"{pathlib.Path(image).stem}.npy")
  # One Adam step of 0.01 moves each coordinate by at most about 0.01 from where it started.
  np.testing.assert_allclose(latent, model.encode(face)[0], atol=0.011)
