"""Every task end to end through the DARTS supernet trunk: a few SGD steps, finite loss that drops."""
import pytest
import torch

from search_spaces import get_space
from search_spaces.darts.supernet import ArchParameters, SearchModel
from unnas.data import DataInfo
from unnas.tasks import build_task

INFO = DataInfo(num_classes=5, image_size=16, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
OPTIONS = {"jig": {"jigsaw_num_perms": 24}, "seg": {"seg_aspp_channels": 8, "seg_aspp_rates": [2]},
           "col": {}, "rot": {}, "cls": {}}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNNAS_CACHE", str(tmp_path / "cache"))


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py


@pytest.mark.parametrize("name", ["cls", "rot", "jig", "col", "seg"])
def test_task_through_supernet(name):
    torch.manual_seed(0)
    task = build_task(name, INFO, **OPTIONS[name])
    trunk = get_space("darts").build_supernet(task.in_channels, width=4, depth=3, stem="cifar",
                                              single_reduction=task.single_reduction)
    model = SearchModel(trunk, task.build_head(trunk.out_channels))
    arch = ArchParameters()
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 3, 16, 16), generator=g, dtype=torch.uint8)
    labels = (torch.randint(0, 5, (2, 16, 16), generator=g) if name == "seg"
              else torch.randint(0, 5, (2,), generator=g))
    x, y = task.make_batch(images, labels, True, torch.Generator().manual_seed(1))
    assert x.shape[0] == 2 * task.images_per_sample and x.shape[1] == task.in_channels
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(3):   # same batch: the loss must go down
        logits = model(x, arch.weights())
        loss = task.loss(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    meter = task.new_meter()
    with torch.no_grad():
        meter.update(model(x, arch.weights()), y, losses[-1])
    stats = meter.compute()
    assert meter.primary in stats and 0.0 <= stats[meter.primary] <= 100.0
