"""`python -m stylizer`: a painting on success, one clear line and exit 2 on bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from stylizer import cli, images
from stylizer.params import limits

# In-process runs share the test session's torch settings (one thread on shared cores).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["--size", "48", "--steps", "4", "--scales", "1", "--device", "cpu", "-q"]


def _python_m(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STYLEBOT_STYLES_DIR"}
    env["OMP_NUM_THREADS"] = "1"  # a 48-px painting gains nothing from threads
    return subprocess.run([sys.executable, "-m", "stylizer", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240, check=False)


@pytest.fixture
def photo(tmp_path: Path, content_image: Image.Image) -> Path:
    path = tmp_path / "photo.png"
    content_image.save(path)
    return path


def _one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_a_tiny_run_writes_a_png(tmp_path: Path, photo: Path) -> None:
    out = tmp_path / "painted.png"
    proc = _python_m(tmp_path, str(photo), "-s", "mosaic", "-o", str(out), *TINY)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG")
    img = images.decode(data)
    assert img.size == (48, 36)
    assert "painted.png" in proc.stdout
    assert proc.stdout.count("\n") == 1  # one line to say where the picture is


def test_a_style_file_and_jpeg_output(tmp_path: Path, photo: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    style = tmp_path / "my-style.png"
    Image.effect_mandelbrot((96, 96), (-2.0, -1.5, 1.0, 1.5), 60).convert("RGB").save(style)
    out = tmp_path / "painted.jpg"
    assert cli.main([str(photo), "-s", str(style), "-o", str(out), *TINY]) == 0
    assert out.read_bytes().startswith(b"\xff\xd8")
    assert images.probe(out.read_bytes()).format == "JPEG"
    assert "painted.jpg" in capsys.readouterr().out


def test_the_default_output_name_comes_from_photo_and_style(tmp_path: Path, photo: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            ) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main([str(photo), "-s", "Pointillism", *TINY]) == 0
    assert images.decode((tmp_path / "photo-pointillism.png").read_bytes()).size == (48, 36)


def test_an_unknown_style_exits_2_with_one_line(tmp_path: Path, photo: Path) -> None:
    proc = _python_m(tmp_path, str(photo), "-s", "mosiac", "-o", str(tmp_path / "o.png"))
    assert proc.returncode == 2
    line = _one_line_error(proc.stderr)
    assert "mosiac" in line
    assert "mosaic" in line
    assert not (tmp_path / "o.png").exists()


def test_a_non_image_input_exits_2(tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "notes.png"
    fake.write_text("just some text\n")
    assert cli.main([str(fake), "-s", "mosaic", "-o", str(tmp_path / "o.png")]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "JPEG" in line


def test_a_non_image_style_file_exits_2(tmp_path: Path, photo: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "style.jpg"
    fake.write_bytes(b"")
    assert cli.main([str(photo), "-s", str(fake), "-o", str(tmp_path / "o.png")]) == 2
    _one_line_error(capsys.readouterr().err)


def test_a_missing_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([str(tmp_path / "nowhere.jpg"), "-s", "mosaic"]) == 2
    assert "nowhere.jpg" in _one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize(("flags", "word"), [(["--steps", "0"], "steps"),
                                             (["--size", "8"], "size"),
                                             (["--style-weight", "1e9"], "style_weight")])
def test_a_value_out_of_range_exits_2(tmp_path: Path, photo: Path,
                                      capsys: pytest.CaptureFixture[str],
                                      flags: list[str], word: str) -> None:
    assert cli.main([str(photo), "-s", "mosaic", *flags]) == 2
    assert word in _one_line_error(capsys.readouterr().err)


def test_style_weights_that_do_not_match_the_styles_exit_2(
        tmp_path: Path, photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main([str(photo), "-s", "mosaic", "-s", "pointillism", "--style-blend", "1",
                     "-o", str(tmp_path / "o.png"), *TINY])
    assert code == 2
    _one_line_error(capsys.readouterr().err)


def test_the_precision_flag_chooses_the_network(tmp_path: Path, photo: Path) -> None:
    """fp32 twice gives the same bytes; bf16 rounds differently, so another picture."""
    outs = {}
    for name, precision in (("a", "fp32"), ("b", "fp32"), ("c", "bf16")):
        out = tmp_path / f"{name}.png"
        code = cli.main([str(photo), "-s", "mosaic", "-o", str(out), *TINY,
                         "--precision", precision])
        assert code == 0
        outs[name] = images.decode(out.read_bytes()).tobytes()
    assert outs["a"] == outs["b"]
    assert outs["a"] != outs["c"]


def test_an_unknown_device_exits_2(tmp_path: Path, photo: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main([str(photo), "-s", "mosaic", "-o", str(tmp_path / "o.png"),
                     "--size", "48", "--steps", "1", "--device", "gpu7"])
    assert code == 2
    _one_line_error(capsys.readouterr().err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_a_gpu_exits_2(tmp_path: Path, photo: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main([str(photo), "-s", "mosaic", "-o", str(tmp_path / "o.png"),
                     "--size", "48", "--steps", "1", "--device", "cuda"])
    assert code == 2
    _one_line_error(capsys.readouterr().err)


def test_a_weights_file_that_is_not_vgg_exits_2(tmp_path: Path, photo: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "weights.pth"
    bogus.write_bytes(b"\x80\x02not really a checkpoint")
    code = cli.main([str(photo), "-s", "mosaic", "-o", str(tmp_path / "o.png"),
                     "--weights", str(bogus), *TINY])
    assert code == 2
    assert "weights.pth" in _one_line_error(capsys.readouterr().err)


def test_no_photo_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["-s", "mosaic"])
    assert info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_list_styles_with_a_pack(styles_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--list-styles", "--styles-dir", str(styles_dir)]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    for name in ("starry-night", "great-wave", "grande-jatte", "mosaic", "pointillism"):
        assert name in names
    assert "The Starry Night" in out
    assert "Vincent van Gogh" in out


def test_list_styles_without_a_pack(tmp_path: Path) -> None:
    proc = _python_m(tmp_path, "--list-styles")
    assert proc.returncode == 0
    lines = proc.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["mosaic", "brushstrokes", "pointillism"]
    assert "STYLEBOT_STYLES_DIR" in lines[-1]  # says how to add the paintings
    assert "starry-night" not in proc.stdout


def test_every_param_has_a_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for name in limits():
        assert "--" + name.replace("_", "-") in text, name
    for flag in ("--style", "--output", "--device", "--weights", "--list-styles"):
        assert flag in text


@pytest.mark.parametrize("case", ["photo is a folder", "output is a folder",
                                  "output folder missing", "photo is endless",
                                  "style file missing"])
def test_a_bad_path_is_one_line_before_any_painting(
        tmp_path: Path, photo: Path, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = {"photo is a folder": [str(tmp_path), "-s", "mosaic"],
            "output is a folder": [str(photo), "-s", "mosaic", "-o", str(tmp_path)],
            "output folder missing": [str(photo), "-s", "mosaic", "-o",
                                      str(tmp_path / "no" / "such" / "x.png")],
            "photo is endless": ["/dev/zero", "-s", "mosaic"],
            "style file missing": [str(photo), "-s", str(tmp_path / "nope.png")]}[case]
    if case == "output is a folder":
        (tmp_path / "out.png").mkdir()
        args[-1] = str(tmp_path / "out.png")
    assert cli.main([*args, *TINY]) == 2
    line = _one_line_error(capsys.readouterr().err)
    expected = {"photo is a folder": "is a directory", "output is a folder": "is a directory",
                "output folder missing": "does not exist", "photo is endless": "25 MB",
                "style file missing": "no such file"}[case]
    assert expected in line


def test_a_broken_style_image_is_named_as_the_style(
        tmp_path: Path, photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "style.png"
    broken.write_bytes(b"")
    assert cli.main([str(photo), "-s", str(broken), *TINY]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert f"The style image {broken}: The file is empty" in line


def test_a_picture_just_over_the_pixel_cap_says_so_without_rounding_to_it() -> None:
    data = images.encode(Image.new("1", (8000, 5001)), "PNG")
    with pytest.raises(images.ImageTooLarge,
                       match=r"8000x5001 pixels, over the limit of 40,000,000 \(40 megapixels\)"):
        images.probe(data)
