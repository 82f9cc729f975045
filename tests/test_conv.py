"""Convolutional networks and real (colour) images: shapes, training, the CLI on an RGB folder, uint8 storage."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_vaekit
from PIL import Image

from vaekit.checkpoint import load_model
from vaekit.config import Config, ModelConfig, TrainConfig, apply_overrides
from vaekit.data import DataConfig, load_data
from vaekit.data.preprocess import split_rows
from vaekit.data.raw import RawData
from vaekit.errors import VaekitError
from vaekit.evaluate import log_likelihood
from vaekit.images import save_grid
from vaekit.model import VAE
from vaekit.networks import DECODERS, ENCODERS, build_decoder, build_encoder
from vaekit.networks.conv import ConvDecoder, ConvEncoder
from vaekit.report import single
from vaekit.report.runinfo import load_run_info
from vaekit.train import fit

SHAPES = [(28, 28), (1, 28, 28), (3, 32, 32), (3, 64, 64), (28, 20)]
SMALL = ModelConfig(encoder="conv", decoder="conv", channels=(4, 8), latent_dim=3, likelihood="bernoulli")


def one_line(err: pytest.ExceptionInfo[VaekitError]) -> None:
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------ networks
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("n_params", [1, 2])
@pytest.mark.parametrize("cond_dim", [0, 5])
def test_conv_networks_map_any_image_shape_exactly(shape: tuple[int, ...], n_params: int, cond_dim: int) -> None:
    g = torch.Generator().manual_seed(0)
    enc = build_encoder(SMALL, shape, cond_dim, 6)
    dec = build_decoder(SMALL, cond_dim, (n_params, *shape))
    assert isinstance(enc, ConvEncoder) and isinstance(dec, ConvDecoder) and not enc.accepts_flat
    x = torch.rand(4, *shape, generator=g)
    c = torch.rand(4, cond_dim, generator=g) if cond_dim else None
    assert enc(x, c).shape == (4, 6)
    assert dec(torch.randn(7, 3, generator=g), None if c is None else torch.rand(7, cond_dim, generator=g)).shape \
        == (7, n_params, *shape)
    if c is not None:  # the condition reaches both networks
        assert not torch.equal(enc(x, c), enc(x, c + 1))
        z = torch.randn(4, 3, generator=g)
        assert not torch.equal(dec(z, c), dec(z, c + 1))


@pytest.mark.parametrize("kernel", [2, 3, 4, 5, 7])
@pytest.mark.parametrize("hw", [(28, 20), (9, 13), (8, 8)])
def test_every_kernel_size_restores_odd_and_even_sides(kernel: int, hw: tuple[int, int]) -> None:
    cfg = dataclasses.replace(SMALL, kernel_size=kernel, channels=(2, 3, 4))
    dec = build_decoder(cfg, 0, (2, 3, *hw))
    assert dec(torch.zeros(2, 3)).shape == (2, 2, 3, *hw)
    assert build_encoder(cfg, (3, *hw), 0, 4)(torch.zeros(2, 3, *hw)).shape == (2, 4)


def test_encoder_is_convolutional_and_decoder_layout_is_channels_first() -> None:
    """Translation equivariance of the first block: a shifted image shifts its stride-2 feature map."""
    enc = build_encoder(SMALL, (1, 16, 16), 0, 6)
    x = torch.zeros(1, 1, 16, 16)
    x[..., 4, 4] = 1.0
    shifted = torch.roll(x, shifts=(2, 2), dims=(2, 3))
    f, fs = enc.convs[0](x), enc.convs[0](shifted)
    assert torch.allclose(torch.roll(f, shifts=(1, 1), dims=(2, 3)), fs, atol=1e-6)
    # the decoder's P * C output channels are read parameter-major: (m, P*C, H, W) -> (m, P, C, H, W)
    dec = build_decoder(SMALL, 0, (2, 3, 8, 8))
    z = torch.randn(2, 3)
    raw = dec.deconvs(dec.head(z).reshape(2, *dec.start))
    assert torch.equal(dec(z), raw.reshape(2, 2, 3, 8, 8))


@pytest.mark.parametrize("shape", [(5,), (2, 28, 28), (4, 8, 8), (2, 3, 8, 8)])
def test_conv_refuses_non_images_naming_the_mlp(shape: tuple[int, ...]) -> None:
    for key, other in (("encoder", "mlp"), ("decoder", "mlp")):
        cfg = dataclasses.replace(SMALL, **{key: "conv", ("decoder" if key == "encoder" else "encoder"): other})
        with pytest.raises(VaekitError, match=rf"model.{key} conv needs images .*use --model.{key} mlp") as e:
            VAE(cfg, shape)
        one_line(e)


def test_too_deep_for_the_image_is_a_one_line_error() -> None:
    cfg = dataclasses.replace(SMALL, kernel_size=4, channels=(2, 2, 2, 2))
    with pytest.raises(VaekitError, match=r"too small for 4 stride-2 blocks .*--model.channels") as e:
        VAE(cfg, (8, 8))
    one_line(e)


def test_config_keys_validate_and_parse_from_the_command_line() -> None:
    assert ModelConfig().channels == (32, 64) and ModelConfig().kernel_size == 3
    assert "conv" in ENCODERS and "conv" in DECODERS
    cfg = apply_overrides(Config(), {"model.channels": "8,16,32", "model.kernel_size": "4",
                                     "model.encoder": "conv", "model.decoder": "conv"})
    assert cfg.model.channels == (8, 16, 32) and cfg.model.kernel_size == 4 and cfg.model.encoder == "conv"
    for bad, match in (({"channels": (0, 8)}, "model.channels"), ({"channels": (4,) * 9}, "model.channels"),
                       ({"kernel_size": 1}, "model.kernel_size"), ({"kernel_size": 8}, "model.kernel_size")):
        with pytest.raises(VaekitError, match=match):
            ModelConfig(**bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ models
@pytest.mark.parametrize("likelihood,variance", [("bernoulli", "per-dim"), ("gaussian", "per-dim"),
                                                 ("gaussian-learned", "per-dim"), ("gaussian-learned", "per-output")])
@pytest.mark.parametrize("encoder", ["conv", "mlp"])
def test_every_likelihood_trains_under_bf16_autocast(likelihood: str, variance: str, encoder: str) -> None:
    cfg = dataclasses.replace(SMALL, likelihood=likelihood, variance=variance, encoder=encoder, hidden=(16,))
    model = VAE(cfg, (3, 12, 10))
    n_out = 2 if variance == "per-output" else 1
    assert model.decoder.out_shape == (n_out, 3, 12, 10)
    x = (torch.rand(6, 3, 12, 10, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.decoder(torch.zeros(2, 3)).dtype == torch.bfloat16
        elbo = model.elbo(x)
    assert elbo.shape == (6,) and elbo.dtype == torch.float32 and torch.isfinite(elbo).all()
    elbo.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_tiny_conv_vae_overfits_a_small_batch() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    protos = (torch.rand(4, 1, 8, 8, generator=g) < 0.4).float()
    x = protos.repeat(4, 1, 1, 1)  # 16 images, 4 distinct binary patterns
    model = VAE(dataclasses.replace(SMALL, channels=(8, 16), latent_dim=4), (1, 8, 8))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with torch.no_grad():
        start = float(model.elbo(x).mean())
    for _ in range(150):
        loss = -model.elbo(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        end = float(model.elbo(x, n_samples=8).mean())
    # at the start each of the 64 pixels costs about log 2 nats; memorising 4 patterns costs ~log 4 nats of KL
    assert start < -40.0 and end > -12.0 and end - start > 30.0


# ------------------------------------------------------------------------------------ storage
def _uint8_images(tmp_path: Path, n: int = 60, shape: tuple[int, ...] = (3, 6, 5)) -> tuple[Path, np.ndarray]:
    x = np.random.default_rng(4).integers(0, 256, (n, *shape), dtype=np.uint8)
    np.save(tmp_path / "img.npy", x)
    return tmp_path / "img.npy", x


def test_uint8_data_stay_uint8_and_serve_the_float32_values_bit_for_bit(tmp_path: Path) -> None:
    path, x = _uint8_images(tmp_path)
    b = load_data(DataConfig(path=str(path), binarize="dynamic"), "bernoulli")
    rows = b.info["n_train"], b.info["n_val"], b.info["n_test"]
    assert b.train.x.dtype == torch.uint8 and b.train.nbytes == rows[0] * 90
    assert b.val.x.dtype == torch.uint8 and b.test.x.dtype == torch.uint8  # their fixed 0/1 draws
    # reference: the float32 preprocessing of the same rows (scaled by 1/255 in float32, clamped)
    split, _ = split_rows(RawData(x, None), DataConfig(path=str(path)))
    ref = torch.from_numpy(x[split["train"]].astype(np.float32)).mul_(1 / 255).add_(0.0).clamp_(0.0, 1.0)
    idx = torch.tensor([5, 0, 17, 3, 3])
    served = b.train.batch(idx, torch.Generator().manual_seed(9))
    expected = (torch.rand((5, 3, 6, 5), generator=torch.Generator().manual_seed(9)) < ref[idx]).float()
    assert served.dtype == torch.float32 and torch.equal(served, expected)
    grey_levels = dataclasses.replace(b.train, dynamic=False).batch(idx)
    assert torch.equal(grey_levels, ref[idx])  # 1/255-scaled levels, the same float32 bits
    test_ref = torch.from_numpy(x[split["test"]].astype(np.float32)).mul_(1 / 255).add_(0.0)
    draw = torch.bernoulli(test_ref.clamp_(0.0, 1.0), generator=torch.Generator().manual_seed(2))
    assert torch.equal(b.test.all(), draw)


def test_uint8_gaussian_dequantised_train_split_is_uint8_and_exact(tmp_path: Path) -> None:
    path, x = _uint8_images(tmp_path)
    b = load_data(DataConfig(path=str(path)), "auto")
    assert b.info["prep"]["likelihood"] == "gaussian-learned"  # colour images: a Gaussian, not binarised
    assert b.info["prep"]["dequantize"] == "uniform" and b.train.x.dtype == torch.uint8
    assert b.test.x.dtype == torch.float32  # its one fixed dequantisation draw is stored
    split, _ = split_rows(RawData(x, None), DataConfig(path=str(path)))
    idx = torch.tensor([1, 2, 30])
    served = b.train.batch(idx, torch.Generator().manual_seed(3))
    ref = torch.from_numpy(x[split["train"]].astype(np.float32))[idx]
    assert torch.equal(served, ref + torch.rand(ref.shape, generator=torch.Generator().manual_seed(3)))
    (tmp_path / "g").mkdir()
    grey = load_data(DataConfig(path=str(_uint8_images(tmp_path / "g", shape=(6, 5))[0])), "auto")
    assert grey.info["prep"]["likelihood"] == "bernoulli"  # grey images keep the binarised Bernoulli default


# ------------------------------------------------------------------------------------ the CLI
def _rgb_folder(folder: Path, n: int = 24) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for i in range(n):
        a = np.zeros((12, 10, 3), np.uint8)
        a[..., i % 3] = rng.integers(120, 256, (12, 10))  # a red, green or blue picture
        a[:4, :, (i + 1) % 3] = 200
        Image.fromarray(a).save(folder / f"im{i:02d}.png")


def test_rgb_folder_trains_an_rgb_conv_run_through_the_cli(tmp_path: Path) -> None:
    _rgb_folder(tmp_path / "pics")
    runs = tmp_path / "runs"
    run_vaekit("train", "--data.path", str(tmp_path / "pics"), "--model.encoder", "conv", "--model.decoder", "conv",
               "--model.channels", "4,8", "--model.latent_dim", "2", "--train.epochs", "1", "--train.batch_size", "8",
               "--runs", str(runs), "--name", "rgb", "--no-progress", "--no-report", cwd=tmp_path, check=True)
    run = runs / "rgb"
    model, config, _ = load_model(run)
    assert model.event_shape == (3, 12, 10) and config.model.encoder == "conv" and config.model.channels == (4, 8)
    assert config.model.likelihood == "gaussian-learned"
    proc = run_vaekit("eval", str(run), "--k", "20", "--json", cwd=tmp_path, check=True)
    result = json.loads(proc.stdout)
    assert math.isfinite(result["log_likelihood_nats"]) and result["log_likelihood_nats"] < 0
    run_vaekit("sample", str(run), "-n", "9", "--out", str(tmp_path / "s.png"), cwd=tmp_path, check=True)
    with Image.open(tmp_path / "s.png") as im:
        assert im.mode == "RGB"
        a = np.asarray(im).astype(int)
    assert a.ndim == 3 and a.shape[2] == 3
    assert _colourful(a) > 0.05  # colour, not grey (a [0, 1] clip would leave the 0..255 means white)
    assert len(np.unique(a.reshape(-1, 3), axis=0)) > 20
    run_vaekit("reconstruct", str(run), "-n", "6", "--out", str(tmp_path / "r.png"), cwd=tmp_path, check=True)
    with Image.open(tmp_path / "r.png") as im:
        assert im.mode == "RGB"
    assert _colourful(np.asarray(Image.open(tmp_path / "r.png")).astype(int)) > 0.05
    # the report draws the same grids in colour, mapped by the run's display range (0..255), not clipped
    info = load_run_info(run)
    assert single.shown_range(info) == (0.0, 255.0)
    for section, alt in ((single.reconstructions_section(info, 0), "reconstructions"),
                         (single.samples_section(info, 0), "samples from the prior")):
        png = re.search(rf'<img alt="{alt}" src="data:image/png;base64,([^"]+)"', section.body)
        assert png is not None, alt
        with Image.open(io.BytesIO(base64.b64decode(png.group(1)))) as im:
            assert _colourful(np.asarray(im.convert("RGB")).astype(int)) > 0.02, alt


def _colourful(a: np.ndarray) -> float:
    """The fraction of pixels of an (H, W, 3) image whose channels differ by more than 30 levels."""
    return float(((np.abs(a[..., 0] - a[..., 1]) + np.abs(a[..., 1] - a[..., 2])) > 30).mean())


def test_digits_conv_run_through_the_cli_reloads_strictly_with_the_same_log_p(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run_vaekit("train", "--data.name", "digits", "--model.encoder", "conv", "--model.decoder", "conv",
               "--model.channels", "4,8", "--model.latent_dim", "2", "--train.epochs", "1", "--runs", str(runs),
               "--name", "dig", "--no-progress", "--no-report", "--no-artifacts", cwd=tmp_path, check=True)
    model, config, _ = load_model(runs / "dig")
    assert model.event_shape == (8, 8) and isinstance(model.encoder, ConvEncoder)
    proc = run_vaekit("eval", str(runs / "dig"), "--k", "50", "--json", cwd=tmp_path, check=True)
    assert math.isfinite(json.loads(proc.stdout)["log_likelihood_nats"])
    # the same model rebuilt from its config and strictly loaded gives the same log p to the bit
    fresh = VAE(config.model, schema=model.schema, data_loc=model.data_loc, data_scale=model.data_scale)
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert set(fresh.state_dict()) == set(model.state_dict())
    x = (torch.rand(5, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    a = log_likelihood(model, x, k=30, seed=1)
    b = log_likelihood(fresh.eval(), x, k=30, seed=1)
    assert torch.equal(a, b)


def test_trained_model_and_its_checkpoint_agree(tmp_path: Path) -> None:
    cfg = Config(name="c", data=DataConfig(name="digits", limit=200),
                 model=dataclasses.replace(SMALL, likelihood="auto"),
                 train=TrainConfig(epochs=1, batch_size=32, device="cpu"))
    run, trainer = fit(cfg, tmp_path / "runs")
    loaded, _, _ = load_model(run)
    assert trainer.model.state_dict().keys() == loaded.state_dict().keys()
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in trainer.model.state_dict().items())
    x = (torch.rand(4, 8, 8, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    trainer.model.eval()
    assert torch.equal(log_likelihood(trainer.model, x, k=20, seed=0), log_likelihood(loaded, x, k=20, seed=0))


def test_rgb_grid_png_has_three_channels(tmp_path: Path) -> None:
    imgs = torch.zeros(4, 3, 6, 6)
    imgs[:, 0] = 1.0  # red
    save_grid(imgs, tmp_path / "g.png", upscale=1)
    with Image.open(tmp_path / "g.png") as im:
        a = np.asarray(im)
    assert im.mode == "RGB" and (a[1, 1] == [255, 0, 0]).all()
