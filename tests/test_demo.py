"""`oder-edu demo`: the rows it returns are honest, and the command writes its table and PNG.

Run at 64² (and 32² for the command) so the file stays fast; the real 128² run is what the
README quotes.
"""

import pytest

from oder_edu.cli import main as cli_main
from oder_edu.commands.demo import format_table, run_demo


@pytest.fixture(scope="module")
def small_demo():
    return run_demo(image_size=64, num_angles=30, iterations=30, device="cpu")


def test_learned_priors_beat_fbp(small_demo):
    rows, images, truth = small_demo
    by_name = {r["method"]: r for r in rows}
    assert list(by_name) == ["FBP", "FISTA-TV", "PnP-ADMM (DnCNN)", "RED (DnCNN)", "online RED b/B=1/4"]
    fbp = by_name["FBP"]["psnr"]
    for name in ("FISTA-TV", "PnP-ADMM (DnCNN)", "RED (DnCNN)", "online RED b/B=1/4"):
        assert by_name[name]["psnr"] >= fbp + 2.0, (name, by_name[name]["psnr"], fbp)
        assert by_name[name]["ssim"] > by_name["FBP"]["ssim"]
    assert all(images[name].shape == truth.shape == (1, 1, 64, 64) for name in by_name)


def test_rows_report_measured_time_and_memory(small_demo):
    rows, _, _ = small_demo
    for r in rows:
        assert r["seconds"] > 0 and r["peak_mib"] > 0
    by_name = {r["method"]: r for r in rows}
    table = format_table(rows)
    assert table.count("\n") == len(rows) + 1 and f"{by_name['FBP']['psnr']:.2f}" in table


def test_demo_command_prints_the_table_and_writes_the_png(tmp_path, capsys):
    out = tmp_path / "figures" / "demo.png"
    assert cli_main(["demo", "--out", str(out), "--image-size", "32", "--num-blocks", "16", "--iterations", "3"]) == 0
    printed = capsys.readouterr().out
    assert "| FBP |" in printed and "| online RED b/B=1/4 |" in printed and str(out) in printed
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
