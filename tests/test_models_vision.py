"""Tests of the image architectures (mlp, resnet, vit); their data: tests/test_data_images.py.

`.venv/bin/python -m pytest -q tests/test_models_vision.py`
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from empirics.activations import ActivationLayer
from empirics.models import get_arch
from empirics.tasks import images as image_task
from theory.registry import RegistryError

ARCHS = ("mlp", "resnet", "vit")
# A user activation added through the NAME=EXPR spec, asymmetric like GELU/SiLU.
USER_ACTIVATION = "vis_tanhgate=x*(1+tanh(x))/2"
TINY = {
    "mlp": {"depth": 2, "width": 16, "val_size": 64},
    "resnet": {"widths": (4, 8), "blocks_per_stage": 1, "val_size": 64},
    "vit": {"dim": 16, "depth": 1, "heads": 2, "mlp_ratio": 2, "val_size": 64},
}
TRAINING_FIELDS = {"steps", "batch_size", "lr", "optimizer", "warmup"}


def tiny_model(arch: str, activation: str) -> tuple[object, torch.nn.Module]:
    module = get_arch(arch)
    cfg = module.Config(activation=activation, **TINY[arch])
    return cfg, module.Model(cfg)


def fixed_batch(arch: str, cfg: object, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return next(image_task.make_data("synthetic", cfg, split="train", batch_size=n, generator=gen))


@pytest.mark.parametrize("activation", ["relu", "gelu2_clip", USER_ACTIVATION])
@pytest.mark.parametrize("arch", ARCHS)
def test_loss_is_finite_and_decreases_on_a_fixed_batch(arch: str, activation: str) -> None:
    torch.manual_seed(0)
    cfg, model = tiny_model(arch, activation)
    batch = fixed_batch(arch, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss, metrics = image_task.loss_and_metrics(model, batch)
        assert torch.isfinite(loss), f"{arch}/{activation}: loss {loss}"
        assert 0.0 <= metrics["accuracy"] <= 1.0
        opt.zero_grad()
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        opt.step()
        losses.append(loss.item())
    # Eight Adam steps on 16 examples must fit them noticeably; a broken gradient path would not.
    assert losses[-1] < 0.9 * losses[0], losses


def _store(into: dict, key: str, pick):
    def hook(module, inputs, output):
        into[key] = pick(inputs, output)

    return hook


@pytest.mark.parametrize("arch", ARCHS)
def test_every_activation_is_a_registry_layer_that_names_its_source(arch: str) -> None:
    _, model = tiny_model(arch, "silu")
    modules = dict(model.named_modules())
    acts = {n: m for n, m in modules.items() if isinstance(m, ActivationLayer)}
    assert acts, "no activation layers"
    for name, act in acts.items():
        assert act.name == "silu"
        source = modules[act.feeds_from]
        assert any(p.numel() for p in source.parameters()), f"{name} feeds from {act.feeds_from}"
        captured: dict[str, torch.Tensor] = {}
        h1 = source.register_forward_hook(_store(captured, "src", lambda i, o: o))
        h2 = act.register_forward_hook(_store(captured, "pre", lambda i, o: i[0]))
        cfg = model.cfg
        model(fixed_batch(arch, cfg, n=4)[0])
        h1.remove()
        h2.remove()
        if not getattr(act, "also_from", ()) and not name.endswith("act2"):
            # Straight-line source: the activation's input is exactly the source's output.
            assert torch.equal(captured["src"], captured["pre"]), name


def test_mlp_without_bias_has_no_bias_parameters() -> None:
    module = get_arch("mlp")
    model = module.Model(module.Config(activation="relu", depth=3, width=8, bias=False))
    assert not [n for n, _ in model.named_parameters() if n.endswith("bias")]
    with_bias = module.Model(module.Config(activation="relu", depth=3, width=8, bias=True))
    assert len([n for n, _ in with_bias.named_parameters() if n.endswith("bias")]) == 4


@pytest.mark.parametrize("init", ["kaiming_normal", "xavier_normal"])
def test_mlp_gaussian_inits_zero_the_biases(init: str) -> None:
    module = get_arch("mlp")
    model = module.Model(module.Config(activation="relu", depth=2, width=64, init=init))
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert torch.count_nonzero(p) == 0, name
    fc1 = model.layers.fc1.weight
    expected = (2.0 / 784) ** 0.5 if init == "kaiming_normal" else (2.0 / (784 + 64)) ** 0.5
    # 50176 draws: the sample std is within 2% of the target with overwhelming probability
    # (relative standard error ~ 1/sqrt(2n) = 0.3%, so 2% is ~6 standard errors).
    assert abs(fc1.std().item() / expected - 1) < 0.02


BAD_FIELDS = [
    ("mlp", "depth", 0),
    ("mlp", "width", -3),
    ("mlp", "bias", "yes"),
    ("mlp", "init", "orthogonal"),
    ("mlp", "n_classes", 1),
    ("resnet", "widths", ()),
    ("resnet", "blocks_per_stage", 0),
    ("resnet", "widths", (16, 2.5)),
    ("vit", "patch_size", 5),
    ("vit", "heads", 3),
    ("vit", "pool", "max"),
    ("vit", "dim", 0),
]


@pytest.mark.parametrize(("arch", "field", "value"), BAD_FIELDS)
def test_bad_config_field_raises_value_error_naming_it(
    arch: str, field: str, value: object
) -> None:
    module = get_arch(arch)
    with pytest.raises(ValueError, match=field):
        module.Config(activation="relu", **{field: value})


@pytest.mark.parametrize("arch", ARCHS)
def test_unknown_activation_lists_valid_names(arch: str) -> None:
    with pytest.raises(RegistryError) as info:
        get_arch(arch).Config(activation="rleu")
    message = str(info.value)
    assert "rleu" in message
    for valid in ("relu", "gelu", "silu", "tanh", "gelu2_clip"):
        assert valid in message


@pytest.mark.parametrize("arch", ARCHS)
def test_presets_are_valid_configs_with_training_fields(arch: str) -> None:
    module = get_arch(arch)
    assert set(module.PRESETS) == {"smoke", "small", "paper"}
    for name, preset in module.PRESETS.items():
        assert TRAINING_FIELDS <= set(preset), name
        assert preset["optimizer"] in ("sgd", "adamw", "muon")
        fields = {k: v for k, v in preset.items() if k not in TRAINING_FIELDS}
        module.Config(activation="relu", **fields)  # raises on any bad field


@pytest.mark.parametrize("arch", ARCHS)
def test_evaluate_matches_a_direct_computation_and_restores_mode(arch: str) -> None:
    torch.manual_seed(0)
    cfg, model = tiny_model(arch, "relu")
    batches = list(
        image_task.make_data("synthetic", cfg, split="val", batch_size=24, generator=None)
    )
    assert sum(len(y) for _, y in batches) == cfg.val_size
    model.train()
    result = image_task.evaluate(model, batches)
    assert model.training
    model.eval()
    with torch.no_grad():
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        logits = model(x)
    assert result["val_loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert result["accuracy"] == pytest.approx((logits.argmax(-1) == y).float().mean().item())


# ----------------------------------------------------------------------------------- data


def test_vit_mean_pool_and_resnet_projection_shortcuts() -> None:
    vit = get_arch("vit")
    cfg = vit.Config(activation="relu", dim=16, depth=1, heads=2, pool="mean", patch_size=4)
    model = vit.Model(cfg)
    assert model.cls_token is None and model.pos_embed.shape == (1, 49, 16)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    with pytest.raises(ValueError, match="expected images"):
        model(torch.randn(3, 1, 32, 32))
    resnet = get_arch("resnet")
    net = resnet.Model(resnet.Config(activation="relu", widths=(4, 8, 8), blocks_per_stage=2))
    # Stage changes (channels or stride) get a 1x1 conv + BN shortcut, named for attribution.
    assert net.stages[1][0].act2.also_from == ("stages.1.0.shortcut.1",)
    assert net.stages[2][0].act2.also_from == ("stages.2.0.shortcut.1",)
    assert net.stages[1][1].act2.also_from == ()
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_builtin_activation_runs_forward_and_backward(arch: str) -> None:
    from theory.registry import BUILTIN_ACTIVATIONS

    for name in BUILTIN_ACTIVATIONS:
        torch.manual_seed(0)
        cfg, model = tiny_model(arch, name)
        loss, _ = image_task.loss_and_metrics(model, fixed_batch(arch, cfg, n=4))
        loss.backward()
        assert torch.isfinite(loss), name
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
