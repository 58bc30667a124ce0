"""benchmarks/second_order_phases.py still sees the four forward/backward pairs of a second-order
architecture step (it asserts that), and prints a row per pass."""
import pytest

from benchmarks import second_order_phases

pytestmark = pytest.mark.usefixtures("one_thread")


def test_phases_of_a_tiny_second_order_step(capsys):
    assert second_order_phases.main(["--width", "4", "--depth", "2", "--batch", "4", "--size", "8", "--reps", "1"]) == 0
    out = capsys.readouterr().out
    for name in second_order_phases.PASSES:
        assert f"| {name}: forward |" in out and f"| {name}: backward |" in out
    assert "| 5 weight step" in out and "| whole step |" in out and "100%" in out
