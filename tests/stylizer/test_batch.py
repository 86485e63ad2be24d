"""Batched jobs and the GPU fast path give the same paintings as one job at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from stylizer.config import EngineConfig
from stylizer.engine import Progress, RunOptions, Stylizer
from stylizer.params import StyleParams

CPU = EngineConfig(device="cpu")
CPU_FP32 = EngineConfig(device="cpu", precision="fp32")
CUDA = EngineConfig(device="cuda")


def _photo(seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3)
    return Image.fromarray((base * 0.6 + rng.uniform(0, 100, base.shape)).astype(np.uint8))


def test_a_batch_paints_each_image_as_if_alone() -> None:
    # fp32: bf16 convolutions round differently at another batch size, and a few steps
    # of L-BFGS amplify that (the bf16 test below bounds what the precision costs).
    st = Stylizer(CPU_FP32)
    params = StyleParams(size=64, steps=6, scales=1)
    photos = [_photo(1), _photo(2)]
    styles = [[_photo(3)], [_photo(4), _photo(5)]]
    batch = st.run_batch(photos, styles, params)
    alone = [st.run(p, s, params) for p, s in zip(photos, styles, strict=True)]
    for b, a in zip(batch, alone, strict=True):
        diff = np.abs(np.asarray(b.image, np.int16) - np.asarray(a.image, np.int16))
        assert diff.max() <= 2  # float summation order differs between batch sizes
        assert b.total_loss == pytest.approx(a.total_loss, rel=1e-3)
    assert batch[0].image.tobytes() != batch[1].image.tobytes()


def test_images_of_a_batch_may_have_their_own_style_weight() -> None:
    st = Stylizer(CPU_FP32)  # as above: batch sizes round bf16 differently
    params = StyleParams(size=64, steps=6, scales=1)
    photo, style = _photo(1), [_photo(3)]
    # Far apart: on this tiny photo the style term dominates the objective at any
    # ordinary weight, and L-BFGS barely notices a rescaled objective.
    batch = st.run_batch([photo, photo], [style, style], params, style_weights=[0.01, 5.0])
    for result, weight in zip(batch, (0.01, 5.0), strict=True):
        alone = st.run(photo, style, params.replace(style_weight=weight))
        diff = np.abs(np.asarray(result.image, np.int16) - np.asarray(alone.image, np.int16))
        assert diff.max() <= 2
        assert result.total_loss == pytest.approx(alone.total_loss, rel=1e-3)
    # More weight, more style: closer to the style's Grams, further from the photo.
    assert batch[1].style_loss < batch[0].style_loss
    assert batch[1].content_loss > batch[0].content_loss
    with pytest.raises(ValueError, match="one style weight per photo"):
        st.run_batch([photo, photo], [style, style], params, style_weights=[1.0])


def test_a_batch_reports_each_image_with_its_own_losses_and_preview() -> None:
    st = Stylizer(CPU)
    params = StyleParams(size=64, steps=4, scales=1)
    photos = [_photo(1), _photo(2)]
    styles = [[_photo(3)], [_photo(4)]]
    seen: list[list[Progress]] = []
    results = st.run_batch(photos, styles, params,
                           RunOptions(on_progress=lambda b: seen.append(list(b)),
                                      progress_every=2, preview_every=2, preview_size=64))
    assert [[p.step for p in batch] for batch in seen] == [[2, 2], [4, 4]]
    first, second = seen[-1]
    assert first.total_loss != second.total_loss
    # Each image's last preview is that image at the last step, as it will be saved.
    for progress, result in zip(seen[-1], results, strict=True):
        assert progress.preview is not None
        diff = np.abs(np.asarray(progress.preview, np.int16)
                      - np.asarray(result.image, np.int16))
        assert diff.max() <= 1


def test_a_preview_shows_its_own_step_even_when_looked_at_later() -> None:
    st = Stylizer(CPU)
    seen: list[Progress] = []
    result = st.run(_photo(1), [_photo(3)], StyleParams(size=64, steps=6, scales=1),
                    RunOptions(on_progress=seen.extend, progress_every=1, preview_every=1,
                               preview_size=64))
    early, last = seen[0].preview, seen[-1].preview
    assert early is not None
    assert last is not None
    final = np.asarray(result.image, np.int16)
    assert np.abs(np.asarray(last, np.int16) - final).max() <= 1
    assert np.abs(np.asarray(early, np.int16) - final).mean() > 1  # step 1, not the end
    assert seen[0].preview is early  # rendered once


def test_a_batch_needs_photos_of_one_size() -> None:
    st = Stylizer(CPU)
    with pytest.raises(ValueError, match="one size"):
        st.run_batch([_photo(1), _photo(2, (48, 64))], [[_photo(3)], [_photo(3)]],
                     StyleParams(size=48, steps=2, scales=1))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graphs_match_eager_steps() -> None:
    photo, style = _photo(1, (256, 192)), _photo(2, (256, 256))
    params = StyleParams(size=256, steps=30, scales=1)
    graphed = Stylizer(EngineConfig(device="cuda", cuda_graphs=True)).run(photo, [style], params)
    eager = Stylizer(EngineConfig(device="cuda", cuda_graphs=False)).run(photo, [style], params)
    assert graphed.total_loss == pytest.approx(eager.total_loss, rel=0.05)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_graphed_batch_on_the_gpu_paints_each_image_as_if_alone() -> None:
    st = Stylizer(CUDA)
    st.warm_up()
    assert torch.backends.cudnn.benchmark  # the warm-up's search is off only while it runs
    params = StyleParams(size=128, steps=30, scales=1)
    photos = [_photo(1, (128, 96)), _photo(2, (128, 96)), _photo(3, (128, 96))]
    styles = [[_photo(4, (96, 96))], [_photo(5, (96, 96))], [_photo(6, (96, 96))]]
    batch = st.run_batch(photos, styles, params)
    for i, (photo, style) in enumerate(zip(photos, styles, strict=True)):
        alone = st.run(photo, style, params)
        assert batch[i].total_loss == pytest.approx(alone.total_loss, rel=0.05)


def test_bf16_path_stays_within_a_few_percent_of_fp32() -> None:
    """The GPU's numerics (bf16 convolutions, fp32 Grams) run on the CPU too: the same
    job's saved painting, scored by one fp32 evaluator, loses no more than a few percent."""
    photo, style = _photo(1, (48, 40)), _photo(2, (48, 48))
    params = StyleParams(size=48, steps=16, scales=1)
    ref_engine = Stylizer(CPU_FP32)
    fast = Stylizer(EngineConfig(device="cpu", precision="bf16")).run(photo, [style], params)
    ref = ref_engine.run(photo, [style], params)
    fast_score = ref_engine.evaluate(fast.image, photo, [style], params)
    ref_score = ref_engine.evaluate(ref.image, photo, [style], params)
    assert fast_score["total"] == pytest.approx(ref_score["total"], rel=0.05)
    assert fast_score["style"] == pytest.approx(ref_score["style"], rel=0.05)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fast_path_stays_close_to_fp32() -> None:
    """bf16 convolutions + graphs on the GPU against the fp32 CPU path, same job."""
    photo, style = _photo(1), _photo(2, (64, 64))
    params = StyleParams(size=64, steps=30, scales=1)
    fast = Stylizer(CUDA).run(photo, [style], params)
    ref = Stylizer(CPU).run(photo, [style], params)
    assert fast.total_loss == pytest.approx(ref.total_loss, rel=0.1)
