"""Rotation labels match torch.rot90 (k * 90 degrees counter-clockwise), batch x4, image-major."""
import torch

from unnas.data import DataInfo
from unnas.tasks import build_task

INFO = DataInfo(num_classes=10, image_size=8, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def test_rotation_labels_match_rot90():
    task = build_task("rotation", INFO)
    x = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    inputs, targets = task.make_batch(x, None, True, None)
    assert inputs.shape == (12, 3, 8, 8) and targets.tolist() == [0, 1, 2, 3] * 3
    norm = task.normalize(x)
    for n in range(12):
        b, k = divmod(n, 4)
        assert torch.equal(inputs[n], torch.rot90(norm[b], int(targets[n]), dims=(1, 2)))
    # counter-clockwise: the top-right corner goes to the top-left after 90 degrees
    assert torch.equal(inputs[1, :, 0, 0], norm[0, :, 0, -1])
    assert task.images_per_sample == 4 and task.num_outputs == 4
